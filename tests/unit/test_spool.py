"""The spool file: records round-trip, a torn or corrupt tail is ignored."""

from __future__ import annotations

from ketch import _spool


def test_records_round_trip_in_order(tmp_path):
    writer = _spool.SpoolWriter(tmp_path / "s", {"run": "runs/x"})
    writer.append(_spool.BATCH, 1, b"one")
    writer.append(_spool.PARAMS, 0, b"")
    writer.append(_spool.BATCH, 2, b"two" * 1000)
    writer.close()
    records = [r for r, _ in _spool.read_records(tmp_path / "s")]
    assert [(r.type, r.seq, r.payload[:3]) for r in records] == [
        (_spool.BATCH, 1, b"one"),
        (_spool.PARAMS, 0, b""),
        (_spool.BATCH, 2, b"two"),
    ]
    assert _spool.read_meta(tmp_path / "s") == {"run": "runs/x"}


def test_reading_from_an_offset_resumes_after_a_record(tmp_path):
    writer = _spool.SpoolWriter(tmp_path, {})
    writer.append(_spool.BATCH, 1, b"a")
    first_end = writer.bytes_written
    writer.append(_spool.BATCH, 2, b"b")
    ((record, end),) = list(_spool.read_records(tmp_path, first_end))
    assert (record.seq, record.payload, end) == (2, b"b", writer.bytes_written)


def test_torn_and_corrupt_tails_are_ignored(tmp_path):
    writer = _spool.SpoolWriter(tmp_path, {})
    writer.append(_spool.BATCH, 1, b"kept")
    writer.append(_spool.BATCH, 2, b"torn")
    writer.close()
    path = tmp_path / _spool.RECORDS
    data = path.read_bytes()
    path.write_bytes(data[:-2])  # a crash mid-append
    assert [r.seq for r, _ in _spool.read_records(tmp_path)] == [1]
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF  # a flipped bit in the last payload
    path.write_bytes(bytes(flipped))
    assert [r.seq for r, _ in _spool.read_records(tmp_path)] == [1]
