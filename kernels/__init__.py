"""Attention kernels (numba CUDA) that the cost model is checked against.

See ``kernels.api`` for the functions and ``costmodel/validation/NOTES.md`` for what was measured
(the harness that measures them is ``costmodel.validation``; this package imports nothing of ours).
"""
from .api import (__all__, decode_attention, flash_attention, flash_attention_backward,  # noqa: F401
                  flash_attention_v1, flash_decoding, poisoned_outputs, prepare_decode, standard_attention)
