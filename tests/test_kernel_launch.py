"""hardware_specs/kernel_launch.py: the launch numbers our kernels share with the simulator,
stated once in hardware_specs/kernel_launch.yaml and read by both sides."""
import pytest
from pydantic import ValidationError

from hardware_specs.kernel_launch import DecodeLaunch, decode_launch


def test_kernels_and_simulator_read_the_same_decode_launch():
    """The simulator's decode numbers are the file's, and so are the kernel's."""
    from kernels import _launch, decode
    from simulators import flash

    sim = decode_launch()
    assert _launch.DECODE == sim.model_dump()
    assert (decode.LANES, decode.LANE_WORDS, decode.MAX_REGISTERS, decode.default_threads(128)) == (
        sim.lanes_per_key, sim.lane_words, sim.max_registers, sim.threads)
    assert (flash.DECODE_THREADS, flash.DECODE_LANES, flash.DECODE_LANE_WORDS, flash.DECODE_REGS) == (
        sim.threads, sim.lanes_per_key, sim.lane_words, sim.max_registers)


LAUNCH_NAMES = ("LANES", "LANE_WORDS", "MAX_REGISTERS", "DEFAULT_THREADS")


def test_decode_kernel_states_no_launch_number_itself():
    """Equal values today could be two copies that drift tomorrow: kernels/decode.py assigns its
    launch names from kernels/_launch.DECODE (no number literal), default_threads returns one of
    them, and the register cap reaches kernel_jit by name. (kernels/decode_step.py takes its
    threads from decode.default_threads.)"""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parent.parent / "kernels" / "decode.py").read_text())
    assigned = {}
    for node in tree.body:
        for target in getattr(node, "targets", ()):
            if getattr(target, "id", None) in LAUNCH_NAMES:
                assigned[target.id] = ast.unparse(node.value)
    assert set(assigned) == set(LAUNCH_NAMES)
    assert all(value.startswith("DECODE[") for value in assigned.values()), assigned
    (default_threads,) = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "default_threads"]
    returns = [r.value for r in ast.walk(default_threads) if isinstance(r, ast.Return)]
    assert returns and not any(isinstance(v, ast.Constant) for v in returns), ast.unparse(default_threads)
    caps = [c.args[0] for c in ast.walk(tree) if isinstance(c, ast.Call)
            and getattr(c.func, "id", None) == "kernel_jit" and c.args]
    assert caps and not any(isinstance(a, ast.Constant) for a in caps), [ast.unparse(a) for a in caps]


@pytest.mark.parametrize("threads", [32, 64, 128, 256])
@pytest.mark.parametrize("d", [32, 64, 128])
@pytest.mark.parametrize("itemsize", [2, 4])
def test_keys_per_tile_agree_at_every_launch(threads, d, itemsize):
    """T = G n (kernels/decode.py's DecodeTiles) against the simulator's own statement of it."""
    from kernels.decode import DecodeTiles
    from simulators.flash import decode_keys_per_tile

    assert decode_keys_per_tile(d, itemsize, threads) == DecodeTiles(d, threads, itemsize).keys_per_tile


def test_a_launch_that_is_not_whole_warps_is_rejected():
    with pytest.raises(ValidationError, match="threads"):
        DecodeLaunch(threads=100, lanes_per_key=8, lane_words=32, max_registers=128)
