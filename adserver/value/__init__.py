"""Customer value: what each shopper is worth to an advertiser and when they will order again.

Off the hot path: the compact per-shopper record (a value object, in
`adserver/core/value_record.py`, kept by `adserver/store/customer_values.py`), RFM scores and named
segments against the advertiser's own distribution (`rfm.py`), the next order with shrinkage
and the due-now / overdue audiences (`timing.py`), BG/NBD and Gamma-Gamma for the predicted
12-month value (`models.py`), replenishment intervals per product (`replenishment.py`), and
their measurement on a synthetic population with known parameters (`synthetic.py`,
`evaluation.py`: `kaeru value-eval`).
"""

from adserver.core.value_record import ValueRecord, decode_record, encode_record, with_order

__all__ = ["ValueRecord", "decode_record", "encode_record", "with_order"]
