"""The block manager and the schedulers against traces worked by hand (Kwon et al. 2023 §4.2-4.5)."""

import pytest

from costmodel.serving.blocks import BlockManager, blocks_for
from costmodel.serving.engine import run_engine
from costmodel.serving.request import Request
from costmodel.serving.schedulers import make_scheduler


def test_blocks_for_is_ceil_division():
    assert [blocks_for(n, 4) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]


def test_block_manager_hand_trace():
    bm = BlockManager(num_blocks=4, block_size=4, watermark_fraction=0)
    assert bm.grow(0, 5) and bm.tables[0] == [0, 1]  # 5 tokens: 2 blocks, handed out from block 0
    assert bm.grow(1, 4) and bm.tables[1] == [2]
    assert bm.grow(0, 8) and bm.tables[0] == [0, 1]  # the second block still has room
    assert bm.grow(0, 9) and bm.tables[0] == [0, 1, 3]
    assert bm.free_blocks == 0
    assert bm.free(1) == 1 and bm.free_blocks == 1
    assert not bm.grow(2, 8)  # needs 2, 1 free: nothing is taken
    assert bm.free_blocks == 1 and 2 not in bm.tables
    assert bm.grow(2, 3) and bm.tables[2] == [2]  # the freed block is reused
    assert bm.free(0) == 3 and bm.used_blocks == 1


def test_watermark_and_swap_counts():
    bm = BlockManager(num_blocks=100, block_size=16, watermark_fraction=0.01, num_cpu_blocks=3)
    assert bm.watermark_blocks == 1
    assert bm.can_admit(99 * 16) and not bm.can_admit(99 * 16 + 1)  # 100 blocks would leave none
    bm.grow(7, 40)  # 3 blocks
    assert bm.can_swap_out(7)
    assert bm.swap_out(7) == 3 and bm.free_blocks == 100 and bm.cpu_used == 3
    assert bm.swap_in(7) == 3 and bm.held(7) == 3 and bm.cpu_used == 0


@pytest.mark.parametrize("field,value", [("num_blocks", 0), ("block_size", 0), ("watermark_fraction", 1.0)])
def test_block_manager_rejects_bad_sizes(field, value):
    kwargs = dict(num_blocks=4, block_size=4, watermark_fraction=0.0) | {field: value}
    with pytest.raises(ValueError, match=field):
        BlockManager(**kwargs)


def _serve(scheduler, specs, num_blocks, block_size=4, step_s=1.0, **options):
    """Run (arrival, prompt, output) requests with every step taking ``step_s``; record the batches."""
    bm = BlockManager(num_blocks, block_size, watermark_fraction=0, num_cpu_blocks=num_blocks)
    sched = make_scheduler(scheduler, bm, **options)
    reqs = [Request(i, a, p, o) for i, (a, p, o) in enumerate(specs)]
    steps = []

    def step_time(batch):
        steps.append(([r.rid for r in batch.decode], [(r.rid, n, c) for r, n, c in batch.prefill],
                      batch.swap_blocks, batch.padded))
        return step_s

    run = run_engine(reqs, sched, step_time)
    return run, reqs, steps, sched


@pytest.mark.parametrize("preemption", ["recompute", "swap"])
def test_continuous_preemption_hand_trace(preemption):
    # 3 blocks of 4 tokens; A and B: 4-token prompts, 4 output tokens, both at t = 0. Worked by hand:
    # t0 prefill A (1 block); t1 prefill B (1 block); t2 A needs a 2nd block (the last free one),
    # B needs one too: B, the last admitted, is preempted. recompute: B's block is freed, B re-queued
    # knowing 5 tokens (2 blocks), admitted when A finishes at t5, prefilled (5 tokens), then decodes
    # at t6, t7: done at t8. swap: B's block goes to host memory, comes back at t5 with room for its
    # next token, decodes t5..t7: done at t8 too, without the prefill.
    run, reqs, steps, sched = _serve("continuous", [(0.0, 4, 4), (0.0, 4, 4)], num_blocks=3,
                                     max_batch_tokens=64, preemption=preemption)
    a, b = reqs
    assert (a.first_token_s, a.finish_s) == (1.0, 5.0)
    assert (b.first_token_s, b.finish_s) == (2.0, 8.0)
    assert (a.preemptions, b.preemptions, sched.preemptions) == (0, 1, 1)
    assert steps[0][1] == [(0, 4, 0)] and steps[1][1] == [(1, 4, 0)]
    assert [s[0] for s in steps[2:5]] == [[0], [0], [0]]  # A decodes alone at t2, t3, t4
    if preemption == "recompute":
        assert steps[5] == ([], [(1, 5, 0)], 0, None)  # B's prompt + its 1 token, from scratch
        assert [s[0] for s in steps[6:]] == [[1], [1]]
    else:
        assert steps[2][2] == 1  # one block out at t2
        assert steps[5] == ([1], [], 1, None)  # one block back in, and B decodes at once
        assert [s[0] for s in steps[6:]] == [[1], [1]]
        assert sched.swapped_blocks == 1
    assert len(steps) == 8 and run.end_s == 8.0
    assert sched.bm.used_blocks == 0


def test_chunked_prefill_hand_trace():
    # budget 4 tokens; A (prompt 6, 2 out) and B (prompt 2, 2 out) at t = 0. t0: A's first chunk (4);
    # t1: A's last 2 + B's 2 (mixed prefill chunks); t2: both decode; both done at t3.
    run, reqs, steps, _ = _serve("chunked", [(0.0, 6, 2), (0.0, 2, 2)], num_blocks=16, max_batch_tokens=4)
    assert steps[0] == ([], [(0, 4, 0)], 0, None)
    assert steps[1] == ([], [(0, 2, 4), (1, 2, 0)], 0, None)
    assert steps[2] == ([0, 1], [], 0, None)
    assert [r.first_token_s for r in reqs] == [2.0, 2.0] and [r.finish_s for r in reqs] == [3.0, 3.0]


def test_chunked_puts_decodes_before_prefill():
    # A (prompt 2, 3 out) decoding when B (prompt 8) arrives: every later step holds A's decode and a
    # 3-token chunk of B (budget 4), as Sarathi-Serve's stall-free batching does.
    run, reqs, steps, _ = _serve("chunked", [(0.0, 2, 4), (1.5, 8, 1)], num_blocks=16, max_batch_tokens=4)
    assert steps[0] == ([], [(0, 2, 0)], 0, None)
    assert steps[1] == ([0], [], 0, None)  # t1: B not here yet
    assert steps[2] == ([0], [(1, 3, 0)], 0, None)  # t2
    assert steps[3] == ([0], [(1, 3, 3)], 0, None)  # t3: A's last token
    assert steps[4] == ([], [(1, 2, 6)], 0, None)  # t4: B's last chunk emits its only token
    assert reqs[0].finish_s == 4.0 and reqs[1].first_token_s == 5.0 == reqs[1].finish_s


def test_static_batching_hand_trace():
    # max 2 a batch. A alone at t0 (prompt 2, 1 out) ends at t1. B (4, 3) and C (1, 2) wait; at t1
    # they form a batch padded to 4 prompt tokens: prefill t1-t2, decodes t2-t3, t3-t4 (C's second
    # token is done at t3 but it waits for B); both return at t4.
    run, reqs, steps, _ = _serve("static", [(0.0, 2, 1), (0.2, 4, 3), (0.3, 1, 2)], num_blocks=16, max_seqs=2)
    assert [s[3] for s in steps] == [(1, 2, 0), (2, 4, 0), (2, 1, 4), (2, 1, 5)]
    a, b, c = reqs
    assert (a.first_token_s, a.finish_s) == (1.0, 1.0)
    assert (b.first_token_s, b.finish_s) == (2.0, 4.0) and (c.first_token_s, c.finish_s) == (2.0, 4.0)
