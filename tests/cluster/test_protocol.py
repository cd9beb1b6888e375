"""The wire protocol: every message round-trips, bad frames are refused with a clear reason."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sabot.cluster.protocol import (
    HEADER,
    MAGIC,
    MAX_FRAMES,
    PROTOCOL_VERSION,
    REGISTRY,
    ReplayGuard,
    Sender,
    check_frames,
    decode,
    decode_frame,
    encode,
    payload,
)
from sabot.cluster.protocol import messages as m
from sabot.errors import ProtocolError, VersionMismatchError

_BATCHES = {
    m.AssignMany: lambda: m.AssignMany("j", "f", None, [[0, 1, 0, "msgpack", b"\x90"],
                                                       [1, 1, 0, "msgpack", b"\x90"]]),
    m.MorselResults: lambda: m.MorselResults("j", [[0, 1, 0, "msgpack", b"\x90", 0.5]]),
}


def _sample(cls: type) -> m.Message:
    if cls in _BATCHES:
        return _BATCHES[cls]()
    values = {int: 3, float: 1.5, str: "x", bytes: b"\x00\x01", bool: True, list: [1, "a"],
              dict: {"k": 1}}
    kwargs = {}
    for name, types, no_bool, _nullable, _required in cls._SPEC:
        for value in values.values():
            if isinstance(value, types) and not (no_bool and isinstance(value, bool)):
                kwargs[name] = value
                break
    return cls(**kwargs)


@pytest.mark.parametrize("code", sorted(REGISTRY))
def test_every_message_round_trips(code):
    msg = _sample(REGISTRY[code])
    env = decode(Sender().encode(msg))
    assert env.msg == msg and env.version == PROTOCOL_VERSION


def test_codes_and_ops_are_unique():
    ops = [cls.OP for cls in REGISTRY.values()]
    assert len(ops) == len(set(ops))


def _frames(code: int = m.GetStats.CODE, body: object = None, version: int = PROTOCOL_VERSION,
            session: int = 7, seq: int = 1) -> list[bytes]:
    body = {"request_id": 1} if body is None else body
    return [HEADER.pack(MAGIC, version, code, session, seq) + msgpack.packb(body)]


_HEAD = HEADER.pack(MAGIC, PROTOCOL_VERSION, m.GetStats.CODE, 7, 1)


@pytest.mark.parametrize("frames, reason", [
    ([b"garbage", b"more"], "1 frame"),
    ([b"SABT\x00"], "truncated"),
    ([b"XXXX" + b"\x00" * (HEADER.size - 4) + msgpack.packb({})], "bad magic"),
    (_frames(code=999), "unknown message type 999"),
    (_frames(body=[1, 2]), "body must be a map"),
    (_frames(body={}), "required field 'request_id' is missing"),
    (_frames(body={"request_id": "one"}), "wrong type"),
    ([_HEAD + b"\xc1\xc1"], "not valid msgpack"),
    ([_HEAD + msgpack.packb({"request_id": 1})[:-1]], "not valid msgpack"),
    ([_HEAD], "not valid msgpack"),
    (_frames(session=0), "non-zero"),
])
def test_malformed_frames_are_rejected_with_the_reason(frames, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode(frames)


def test_several_messages_travel_as_the_frames_of_one_zmq_message():
    s = Sender()
    msgs = [m.GetStats(1), m.GetStatus(2, "job"), m.Credit(3)]
    frames = s.encode_many(msgs)
    check_frames(frames)
    envs = [decode_frame(f) for f in frames]
    assert [e.msg for e in envs] == msgs
    assert [e.seq for e in envs] == [1, 2, 3] and {e.session for e in envs} == {s.session}
    assert decode_frame(s.encode(m.GetStats(4))[0]).seq == 4  # one sequence for both
    # one message that cannot be encoded (text UTF-8 cannot carry) is left out alone
    bad = m.MorselFailed("job", 0, 1, "ValueError", "bad \udcff", "", None)
    kept = [decode_frame(f).msg for f in s.encode_many([m.GetStats(5), bad, m.GetStats(6)])]
    assert kept == [m.GetStats(5), m.GetStats(6)]
    with pytest.raises(ProtocolError, match="got 3 frames"):
        decode(frames)  # the single-message decoder refuses a batch
    with pytest.raises(ProtocolError, match="no frame"):
        check_frames([])
    with pytest.raises(ProtocolError, match=f"at most {MAX_FRAMES}"):
        check_frames(frames[:1] * (MAX_FRAMES + 1))


def test_another_version_is_refused_but_its_hello_is_readable():
    with pytest.raises(VersionMismatchError, match="version 9"):
        decode(_frames(version=9))
    hello = m.Hello(9, "c", "worker", "n")
    env = decode(encode(hello, 5, 1, version=9))
    assert env.version == 9 and env.msg == hello


def test_replayed_and_out_of_session_messages_are_caught():
    guard = ReplayGuard()
    s = Sender()
    hello = decode(s.encode(m.Hello(1, "c", "client", "n")))
    first = s.encode(m.GetStats(1))
    assert not guard.check(b"p", decode(first))  # no hello yet: unknown session
    assert guard.check(b"p", hello)
    assert guard.check(b"p", decode(first))
    with pytest.raises(ProtocolError, match="replayed"):
        guard.check(b"p", decode(first))
    assert guard.check(b"p", decode(s.encode(m.GetStats(2))))


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False)
    | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10)


@settings(max_examples=150, deadline=None)
@given(st.lists(plain | st.tuples(st.integers()) | st.integers(min_value=2**64), max_size=20))
def test_any_list_of_items_survives_encoding_with_its_types(items):
    enc, blob = payload.encode_items(items)
    assert enc in ("msgpack", "pickle")
    assert payload.decode_value(enc, blob) == items


def test_inputs_split_and_join_back_for_every_kind():
    import numpy as np
    import pyarrow as pa

    for data in (list(range(1000)), np.arange(1000.0), pa.array(range(1000)),
                 pa.table({"a": range(1000), "b": [str(i) for i in range(1000)]})):
        kind, morsels = payload.split(data, 512)
        assert len(morsels) > 1
        assert sum(n for _, n, _ in morsels) == 1000
        joined = payload.join(kind, [payload.decode_value(e, b) for e, _, b in morsels])
        if isinstance(data, list):
            assert joined == data
        elif isinstance(data, np.ndarray):
            assert np.array_equal(joined, data)
        else:
            assert joined.equals(data)


def test_pieces_of_a_morsel_join_back_into_its_result_for_every_kind():
    """A morsel run in pieces (items sliced by the worker, results framed as ``parts`` by the
    coordinator) decodes to what the whole morsel would have given."""
    import numpy as np
    import pyarrow as pa

    class Point:  # pickled, as arbitrary objects are
        def __init__(self, x):
            self.x = x

    for data in (list(range(100)), [str(i) * 3 for i in range(100)], np.arange(100.0),
                 pa.array(range(100)), pa.table({"a": range(100), "b": [str(i) for i in
                                                                        range(100)]}),
                 [Point(i) for i in range(100)]):
        kind = payload.result_kind_of(data)
        enc, blob = payload.encode_value(data)
        pieces = [payload.slice_morsel(enc, blob, 0, 13), payload.slice_morsel(enc, blob, 13, 40),
                  payload.slice_morsel(enc, blob, 53, -1)]
        parts = [(e, 0, b) for e, b in pieces]
        joined = payload.decode_value(payload.PARTS, payload.join_parts(kind, parts))
        if isinstance(data, list) and isinstance(data[0], Point):
            assert [p.x for p in joined] == list(range(100))
        elif isinstance(data, list):
            assert joined == data
        elif isinstance(data, np.ndarray):
            assert np.array_equal(joined, data)
        else:
            assert joined.equals(data)
    # A piece past the items a morsel holds gets what is there (the coordinator counts it and
    # fails a job whose submit claimed more items than its data held).
    assert payload.decode_value(*payload.slice_morsel(
        *payload.encode_value(list(range(100))), 90, 20)) == list(range(90, 100))
    assert payload.decode_value(*payload.slice_morsel(
        *payload.encode_value(list(range(10))), 40, 5)) == []
    with pytest.raises(ProtocolError, match="start at 0 or later"):
        payload.slice_morsel(*payload.encode_value(list(range(100))), -1, 20)
    with pytest.raises(ProtocolError, match="cannot decode a parts payload"):
        payload.decode_value(payload.PARTS, b"\x01")


def test_a_piece_travels_alone_never_merged_into_a_run():
    whole = [m.Assign("j1", i, 1, 0, "f", None, "msgpack", b"\x90") for i in range(2)]
    piece = m.Assign("j1", 2, 1, 0, "f", None, "msgpack", b"\x90", 5, 10)
    batched = m.batch_morsels([*whole, piece, *whole])
    assert [type(x) for x in batched] == [m.AssignMany, m.Assign, m.AssignMany]
    got = decode(Sender().encode(batched[1])).msg
    assert (got.start, got.count) == (5, 10)


def test_unknown_encoding_is_named():
    with pytest.raises(ProtocolError, match="unknown encoding 'zip'"):
        payload.decode_value("zip", b"")


def test_runs_of_one_jobs_morsels_travel_as_one_message_and_come_back_the_same():
    """A worker's results (and a coordinator's assignments) of one job go out as one message
    per run; decoded and opened they are exactly the messages that went in, in order."""
    a = [m.Assign("j1", i, 1, i * 2, "f", b"code" if i == 0 else None, "msgpack", b"\x90")
         for i in range(3)]
    r = [m.MorselResult("j1", i, 2, 1, "msgpack", b"\x91\x01", 0.25) for i in range(2)]
    other = m.Credit(4)
    msgs = [*a, other, *r, m.MorselResult("j2", 0, 1, 1, "msgpack", b"\x91\x02", 0.0)]
    batched = m.batch_morsels(msgs)
    assert [type(x) for x in batched] == [m.AssignMany, m.Credit, m.MorselResults,
                                          m.MorselResult]
    sender = Sender()
    opened = []
    for msg in batched:
        got = decode(sender.encode(msg)).msg
        opened += got.expand() if hasattr(got, "expand") else [got]
    assert opened == msgs


@pytest.mark.parametrize("body", [
    {"job_id": "j", "func_name": "f", "func_pickle": None, "morsels": []},
    {"job_id": "j", "func_name": "f", "func_pickle": None, "morsels": [[0, 1, 0, "msgpack"]]},
    {"job_id": "j", "func_name": "f", "func_pickle": None,
     "morsels": [[0, True, 0, "msgpack", b""]]},
    {"job_id": "j", "func_name": "f", "func_pickle": None, "morsels": [[0, 1, 0, 5, b""]]},
    {"job_id": "j", "func_name": "f", "func_pickle": None, "morsels": ["x"]},
])
def test_a_malformed_assign_many_is_rejected_with_its_entry_named(body):
    frame = HEADER.pack(MAGIC, PROTOCOL_VERSION, m.AssignMany.CODE, 7, 1) + msgpack.packb(body)
    with pytest.raises(ProtocolError, match="assign-many: (entry 0|carries no entry)"):
        decode([frame])


def test_a_malformed_morsel_results_is_rejected():
    body = {"job_id": "j", "results": [[0, 1, 1, "msgpack", b"\x90", "slow"]]}
    frame = HEADER.pack(MAGIC, PROTOCOL_VERSION, m.MorselResults.CODE, 7, 1) + msgpack.packb(
        body)
    with pytest.raises(ProtocolError, match="morsel-results: entry 0: elapsed_s"):
        decode([frame])
