"""LogBuffer: mmcv's averaging numbers, clearing, and an exact state round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from trackcfg.runner.log_buffer import LogBuffer

# (values with counts, n, expected average) — the count-weighted mean of the last n
AVERAGES = [
    ([(1.0, 1), (2.0, 1), (3.0, 1)], 0, 2.0),
    ([(1.0, 1), (2.0, 1), (3.0, 1)], 2, 2.5),
    ([(1.0, 3), (4.0, 1)], 0, 1.75),
    ([(1.0, 3), (4.0, 1)], 1, 4.0),
    ([(2.0, 2)], 5, 2.0),  # n larger than the history: all of it
]


@pytest.mark.parametrize(("entries", "n", "expected"), AVERAGES)
def test_average_is_count_weighted_mean_of_last_n(
    entries: list[tuple[float, int]], n: int, expected: float
) -> None:
    buf = LogBuffer()
    for value, count in entries:
        buf.update({"loss": value}, count)
    buf.average(n)
    assert buf.output["loss"] == pytest.approx(expected)
    assert buf.ready


def test_average_matches_mmcv_numpy_arithmetic_bitwise() -> None:
    values = [0.1, 0.7, 1e-9, 3.3333333, 2.0 / 3.0]
    counts = [3, 1, 7, 2, 5]
    buf = LogBuffer()
    for v, c in zip(values, counts, strict=True):
        buf.update({"loss": v}, c)
    buf.average(4)
    vals, nums = np.array(values[-4:]), np.array(counts[-4:])
    assert buf.output["loss"] == float(np.sum(vals * nums) / np.sum(nums))


def test_update_accepts_one_element_tensors_and_numpy_scalars() -> None:
    buf = LogBuffer()
    buf.update({"a": torch.tensor(2.0), "b": np.float32(4.0), "c": 1})
    buf.average()
    assert dict(buf.output) == {"a": 2.0, "b": 4.0, "c": 1.0}


@pytest.mark.parametrize("bad", [torch.ones(2), "text", [1.0]])
def test_update_rejects_non_scalars(bad: object) -> None:
    with pytest.raises(TypeError, match="'x'"):
        LogBuffer().update({"x": bad})


def test_average_rejects_negative_n() -> None:
    with pytest.raises(ValueError, match="n must be >= 0"):
        LogBuffer().average(-1)


def test_clear_output_keeps_history_and_clear_drops_everything() -> None:
    buf = LogBuffer()
    buf.update({"loss": 1.0})
    buf.average()
    buf.clear_output()
    assert (dict(buf.output), buf.ready, list(buf.val_history)) == ({}, False, ["loss"])
    buf.clear()
    assert (dict(buf.val_history), dict(buf.n_history)) == ({}, {})


def _roundtrip_through_torch(state: dict[str, object]) -> dict[str, object]:
    stream = io.BytesIO()
    torch.save(state, stream)
    stream.seek(0)
    loaded: dict[str, object] = torch.load(stream, weights_only=True)
    return loaded


def test_state_round_trip_gives_identical_future_averages() -> None:
    original, resumed = LogBuffer(), LogBuffer()
    for i in range(7):
        original.update({"loss": 1.0 / (i + 3), "acc": i * 0.1}, count=i + 1)
    original.average(3)
    resumed.load_state_dict(_roundtrip_through_torch(original.state_dict()))
    assert resumed.ready and dict(resumed.output) == dict(original.output)
    for buf in (original, resumed):
        buf.update({"loss": 0.123456789, "acc": 0.5}, count=2)
        buf.average(5)
    assert dict(resumed.output) == dict(original.output)
    assert resumed.val_history == original.val_history
    assert resumed.n_history == original.n_history


def test_state_keeps_text_outputs_written_by_hooks() -> None:
    buf = LogBuffer()
    buf.output["note"] = "best"
    buf.output["eval_iter_num"] = np.int64(12)  # type: ignore[assignment]
    buf.ready = True
    other = LogBuffer()
    other.load_state_dict(_roundtrip_through_torch(buf.state_dict()))
    assert dict(other.output) == {"note": "best", "eval_iter_num": 12}


def test_load_state_dict_rejects_foreign_state() -> None:
    with pytest.raises(TypeError, match="not a LogBuffer state"):
        LogBuffer().load_state_dict(
            {"val_history": [], "n_history": {}, "output": {}, "ready": True}
        )


# lengths around NumPy's summation blocks (8 accumulators, blocks of 128)
@pytest.mark.parametrize("length", [1, 7, 8, 9, 50, 127, 128, 129, 300, 1000])
@pytest.mark.parametrize("n", [0, 1, 50, 129])
def test_average_is_bitwise_mmcv_for_every_length(length: int, n: int) -> None:
    rng = np.random.default_rng(length * 1000 + n)
    values = (rng.standard_normal(length) * 10.0 ** rng.integers(-9, 9, length)).tolist()
    counts = rng.integers(1, 512, length).tolist()
    buf = LogBuffer()
    for v, c in zip(values, counts, strict=True):
        buf.update({"loss": v}, c)
    buf.average(n)
    # mmcv 1.x LogBuffer.average, verbatim arithmetic on lists
    vals, nums = np.array(values[-n:]), np.array(counts[-n:])
    expected = float(np.sum(vals * nums) / np.sum(nums))
    assert np.float64(buf.output["loss"]).tobytes() == np.float64(expected).tobytes()


# Appends wait in per-key lists that are folded into the arrays every 1024 entries: the
# window may lie in the pending entries, in the arrays, or across both.
@pytest.mark.parametrize("length", [1023, 1024, 1025, 1030, 2100])
@pytest.mark.parametrize("n", [0, 1, 6, 7, 50, 129])
@pytest.mark.parametrize("unit_counts", [True, False])
def test_average_is_bitwise_mmcv_across_folded_and_pending_entries(
    length: int, n: int, unit_counts: bool
) -> None:
    rng = np.random.default_rng(length * 1000 + n)
    values = (rng.standard_normal(length) * 10.0 ** rng.integers(-9, 9, length)).tolist()
    counts = [1] * length if unit_counts else rng.integers(1, 512, length).tolist()
    buf = LogBuffer()
    for v, c in zip(values, counts, strict=True):
        buf.update_scalar("time", v, c)
    buf.average(n)
    vals, nums = np.array(values[-n:]), np.array(counts[-n:])
    expected = float(np.sum(vals * nums) / np.sum(nums))
    assert np.float64(buf.output["time"]).tobytes() == np.float64(expected).tobytes()
    assert (list(buf.val_history["time"]), list(buf.n_history["time"])) == (values, counts)


def test_average_of_negative_zeros_is_positive_zero_as_numpy_sums() -> None:
    buf = LogBuffer()
    for _ in range(3):
        buf.update({"loss": -0.0}, 2)
    buf.average(2)
    assert np.float64(buf.output["loss"]).tobytes() == np.float64(0.0).tobytes()


def test_average_of_zero_counts_is_nan_as_in_mmcv() -> None:
    buf = LogBuffer()
    buf.update({"loss": 1.0}, 0)
    with np.errstate(invalid="ignore"):
        buf.average()
    assert np.isnan(buf.output["loss"])


def test_update_scalar_is_update_with_one_key() -> None:
    by_dict, by_scalar = LogBuffer(), LogBuffer()
    for i, value in enumerate([0.5, 2, np.float32(1.5), torch.tensor(3.0)]):
        by_dict.update({"loss": 1.0, "time": value}, count=i + 1)
        by_scalar.update({"loss": 1.0}, count=i + 1)
        by_scalar.update_scalar("time", value, count=i + 1)  # type: ignore[arg-type]
    assert list(by_scalar.val_history) == list(by_dict.val_history) == ["loss", "time"]
    assert by_scalar.val_history == by_dict.val_history
    assert by_scalar.n_history == by_dict.n_history


def test_a_rejected_value_leaves_no_empty_history() -> None:
    buf = LogBuffer()
    with pytest.raises(TypeError):
        buf.update({"x": "text"})
    with pytest.raises(TypeError):
        buf.update_scalar("y", [1.0])  # type: ignore[arg-type]
    assert (dict(buf.val_history), dict(buf.n_history)) == ({}, {})
