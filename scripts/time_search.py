import time, sys
t0 = time.perf_counter()
from costmodel.parallel.search import search_layouts, row
r = search_layouts("llama3-70b", "dgx-h100", global_batch=512, seq_len=8192)
print("elapsed", r["elapsed_s"], "total", time.perf_counter() - t0, "count", r["count"], "fitting", r["fitting"], "units", r["units"])
for i in r["order"][:5]:
    print(row(r["table"], i))
