"""costmodel/validation/ncu.py: Nsight Compute's CSV output read, its kernels split per case, the command."""
import pytest

from costmodel.validation.ncu import MARK_BEGIN, MARK_END, ncu_command, parse_ncu_csv, short_kernel_name, split_on_markers
from costmodel.validation.schema import NcuKernel


# Shaped like `ncu --csv --page raw --metrics ...` output (header, units row, ==PROF== lines
# and the program's own output around it); numbers invented.
NCU_RAW = '''==PROF== Connected to process 4242 (/usr/bin/python3.11)
validate: running 2 cases
==PROF== Profiling "validate_mark_begin": 0%....50%....100% - 1 pass
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","dram__bytes_read.sum","dram__bytes_write.sum","gpu__time_duration.sum"
"","","","","","","","","","","","byte","Kbyte","usecond"
"0","4242","python3.11","127.0.0.1","_ZN6cudapy7kernels8validate19validate_mark_beginB2v1E","1","7","(1, 1, 1)","(1, 1, 1)","0","9.0","0","0","1.50"
"1","4242","python3.11","127.0.0.1","cudapy::kernels::flash2::fa2_forward[abi:v1](Array<float, 3, C, mutable, aligned>)","1","7","(128, 1, 1)","(64, 32, 1)","0","9.0","1,234,567,890","2,048.5","3,456.25"
"2","4242","python3.11","127.0.0.1","_ZN6cudapy7kernels8validate17validate_mark_endB2v1E","1","7","(1, 1, 1)","(1, 1, 1)","0","9.0","0","0","1.25"
==PROF== Disconnected from process 4242
'''

NCU_DETAILS = '''"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","7","python","h","void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>(Flash_fwd_params)","1","7","(128, 1, 1)","(8, 32, 1)","0","9.0","Command line profiler metrics","dram__bytes_read.sum","Mbyte","12.50"
"0","7","python","h","void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>(Flash_fwd_params)","1","7","(128, 1, 1)","(8, 32, 1)","0","9.0","Command line profiler metrics","dram__bytes_write.sum","byte","4,096"
"0","7","python","h","void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>(Flash_fwd_params)","1","7","(128, 1, 1)","(8, 32, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","ms","1.25"
'''


def test_ncu_raw_page_parsed_with_units_and_separators():
    kernels = parse_ncu_csv(NCU_RAW)
    assert len(kernels) == 3
    k = kernels[1]
    assert k.dram_read_bytes == 1_234_567_890
    assert k.dram_write_bytes == pytest.approx(2048.5e3)  # Kbyte
    assert k.time_s == pytest.approx(3456.25e-6)  # usecond
    assert [short_kernel_name(x.name) for x in kernels] == ["validate_mark_begin", "fa2_forward", "validate_mark_end"]


def test_ncu_details_page_parsed():
    (k,) = parse_ncu_csv(NCU_DETAILS)
    assert (k.dram_read_bytes, k.dram_write_bytes, k.time_s) == pytest.approx((12.5e6, 4096, 1.25e-3))
    assert short_kernel_name(k.name) == "flash_fwd_kernel"


def test_ncu_output_without_csv_or_metrics_rejected():
    with pytest.raises(ValueError, match="no CSV header"):
        parse_ncu_csv("==PROF== ERR_NVGPUCTRPERM - The user does not have permission\n")
    header_only = NCU_RAW.replace(',"gpu__time_duration.sum"', "")
    with pytest.raises(ValueError, match="gpu__time_duration.sum"):
        parse_ncu_csv(header_only)



def test_ncu_output_split_per_case():
    def k(name):
        return NcuKernel(name=name, dram_read_bytes=1, dram_write_bytes=1, time_s=1e-6)

    seq = [k(MARK_BEGIN), k("a"), k("b"), k(MARK_END), k("setup"), k(MARK_BEGIN), k(MARK_END), k(MARK_BEGIN), k("c")]
    groups = split_on_markers(seq, 4)
    assert [None if g is None else [x.name for x in g] for g in groups] == [["a", "b"], [], None, None]
    assert [x.name for x in split_on_markers(parse_ncu_csv(NCU_RAW), 1)[0]][0].startswith("cudapy::kernels::flash2")


def test_ncu_command():
    cmd = ncu_command("/tmp/cases.json", "/tmp/ncu.csv")
    assert cmd[0] == "ncu"
    joined = " ".join(cmd)
    for part in ("--csv", "--page raw", "--clock-control none", "--log-file /tmp/ncu.csv",
                 "dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum",
                 "-m costmodel.validation.run --one /tmp/cases.json"):
        assert part in joined
    assert ncu_command("c.json", "l.csv", deadline=1234.4)[-2:] == ["--deadline", "1234"]
