"""hardware_specs/kernel_launch.py: the launch numbers our kernels share with the simulator,
stated once in hardware_specs/kernel_launch.yaml and read by both sides."""
import pytest
from pydantic import ValidationError

from hardware_specs.kernel_launch import DecodeLaunch, decode_launch


def test_kernels_and_simulator_read_the_same_decode_launch():
    """The simulator's decode numbers are the file's, and so are the kernel's (kernels/decode.py
    still states its own while branch kernels reworks it: this holds them equal until it reads
    kernels/_launch.DECODE)."""
    from kernels import _launch, decode
    from simulators import flash

    sim = decode_launch()
    assert _launch.DECODE == sim.model_dump()
    assert (decode.LANES, decode.LANE_WORDS, decode.MAX_REGISTERS, decode.default_threads(128)) == (
        sim.lanes_per_key, sim.lane_words, sim.max_registers, sim.threads)
    assert (flash.DECODE_THREADS, flash.DECODE_LANES, flash.DECODE_LANE_WORDS, flash.DECODE_REGS) == (
        sim.threads, sim.lanes_per_key, sim.lane_words, sim.max_registers)


@pytest.mark.parametrize("threads", [32, 64, 128, 256])
@pytest.mark.parametrize("d", [32, 64, 128])
@pytest.mark.parametrize("itemsize", [2, 4])
def test_keys_per_tile_agree_at_every_launch(threads, d, itemsize):
    """T = G n (kernels/decode.py's Config) against the simulator's own statement of it."""
    from kernels.decode import Config
    from simulators.flash import decode_keys_per_tile

    assert decode_keys_per_tile(d, itemsize, threads) == Config(d, threads, itemsize).keys_per_tile


def test_a_launch_that_is_not_whole_warps_is_rejected():
    with pytest.raises(ValidationError, match="threads"):
        DecodeLaunch(threads=100, lanes_per_key=8, lane_words=32, max_registers=128)
