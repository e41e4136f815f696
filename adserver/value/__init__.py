"""Customer value: what each shopper is worth to an advertiser and when they will order again.

Pure and off the hot path: a compact per-shopper record (`record.py`), RFM scores and named
segments against the advertiser's own distribution (`rfm.py`), the next order with shrinkage
and the due-now / overdue audiences (`timing.py`), BG/NBD and Gamma-Gamma for the predicted
12-month value (`models.py`), replenishment intervals per product (`replenishment.py`), and
their measurement on a synthetic population with known parameters (`synthetic.py`,
`evaluation.py`: `kaeru value-eval`).
"""

from adserver.value.record import ValueRecord, decode_record, encode_record, with_order

__all__ = ["ValueRecord", "decode_record", "encode_record", "with_order"]
