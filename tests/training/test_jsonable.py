"""training.jsonable.json_safe: results that json.dumps writes strictly."""

from __future__ import annotations

import json
import math

import numpy as np

from training.jsonable import json_safe


def test_json_safe_makes_strict_json_of_nested_results():
    result = {"a": (1, np.float32(0.5), np.int64(3)),
              2: {"nan": math.nan, "inf": np.float64(-np.inf)}, "ok": [True, None, "x"]}
    safe = json_safe(result)
    assert safe == {"a": [1, 0.5, 3], "2": {"nan": None, "inf": None}, "ok": [True, None, "x"]}
    assert type(safe["a"][1]) is float and type(safe["a"][2]) is int
    json.dumps(safe, allow_nan=False)  # would raise on NaN, infinity or a NumPy scalar
    assert math.isnan(result[2]["nan"])  # the input is left as it was
