"""Nexmark's event generator, vectorized with numpy (a reimplementation from its definitions).

Event ``i`` of the stream is a person when ``i % 50 == 0``, an auction when ``i % 50`` is 1-3 and
a bid otherwise (proportions 1:3:46). Its time is ``base_time + i / event_rate``. Ids follow the
generator's relations: person ids and auction ids count up from 1000 with their events; an
auction's seller is mostly a "hot" recent person (3 in 4) or any of the last 1000 people (a few
ids ahead too); a bid goes to a hot auction (1 in 2) or one of the last 100 in flight, from a
hot bidder (3 in 4) or a recent person; categories 10-14; prices ``round(10**(6 u) * 100)``
cents; an auction lasts up to twice the time 100 auctions take to appear.

Events are made in fixed chunks of 50,000 ids, each from its own random stream seeded by
(seed, chunk, kind): the output is the same for a seed whatever the batch size, and each of the
three streams can be generated alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

PROPORTION = 50
PERSON, AUCTION = 1, 3  # per PROPORTION events; the other 46 are bids
FIRST_PERSON_ID = 1000
FIRST_AUCTION_ID = 1000
FIRST_CATEGORY_ID = 10
NUM_CATEGORIES = 5
NUM_IN_FLIGHT_AUCTIONS = 100
NUM_ACTIVE_PEOPLE = 1000
PERSON_ID_LEAD = 10
AUCTION_ID_LEAD = 10
HOT_AUCTION_RATIO = 2
HOT_BIDDER_RATIO = 4
HOT_SELLER_RATIO = 4
CHUNK = 50_000
#: 2015-07-15T00:00:00Z, the event time of event 0.
BASE_TIME_MS = 1_436_918_400_000

TS = pa.timestamp("ms")
PERSON_SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("email_address", pa.string()),
                           ("credit_card", pa.string()), ("city", pa.string()), ("state", pa.string()),
                           ("date_time", TS), ("extra", pa.string())])
AUCTION_SCHEMA = pa.schema([("id", pa.int64()), ("item_name", pa.string()), ("description", pa.string()),
                            ("initial_bid", pa.int64()), ("reserve", pa.int64()), ("date_time", TS),
                            ("expires", TS), ("seller", pa.int64()), ("category", pa.int64()),
                            ("extra", pa.string())])
BID_SCHEMA = pa.schema([("auction", pa.int64()), ("bidder", pa.int64()), ("price", pa.int64()),
                        ("channel", pa.string()), ("url", pa.string()), ("date_time", TS),
                        ("extra", pa.string())])

_FIRST = ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"]
_LAST = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"]
_CITIES = ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond",
           "Seattle", "Kent", "Cheyenne"]
_STATES = ["AZ", "CA", "ID", "OR", "WA", "WY"]
_CHANNELS = ["Google", "Facebook", "Baidu", "Apple"]
POOL = 4096


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 0
    event_rate: int = 10_000  # events per second of event time (Nexmark's first event rate)

    @property
    def delay_us(self) -> float:
        return 1e6 / self.event_rate

    @property
    def max_auction_length_ms(self) -> int:
        """The longest an auction can run (its expires minus its time)."""
        events = NUM_IN_FLIGHT_AUCTIONS * PROPORTION // AUCTION
        return int(2 * events * self.delay_us / 1000) + 1


class _Pools:
    """Strings drawn from per-seed pools (a take per batch, no Python per event)."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 0xC0FFEE])
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))

        def words(n: int, lo: int, hi: int) -> list[str]:
            lens = rng.integers(lo, hi, n)
            return ["".join(rng.choice(letters, k)) for k in lens]

        self.names = pa.array([f"{rng.choice(_FIRST)} {rng.choice(_LAST)}" for _ in range(POOL)])
        self.emails = pa.array([f"{a}@{b}.com" for a, b in zip(words(POOL, 3, 9), words(POOL, 3, 7))])
        self.cards = pa.array([" ".join(f"{x:04d}" for x in rng.integers(0, 10000, 4)) for _ in range(POOL)])
        self.cities = pa.array(_CITIES)
        self.states = pa.array(_STATES)
        self.items = pa.array(words(POOL, 5, 20))
        self.descriptions = pa.array(words(POOL, 20, 60))
        self.extra = pa.array(words(POOL, 10, 40))
        self.channels = pa.array(_CHANNELS + [f"channel-{i}" for i in range(POOL - len(_CHANNELS))])
        self.urls = pa.array([f"https://www.nexmark.com/{a}/item.htm?query=1&channel_id={i}"
                              for i, a in enumerate(words(POOL, 3, 8))])


_pools: dict[int, _Pools] = {}


def prepare(seed: int = 0) -> None:
    """Build the generator's value pools of ``seed`` now (about half a second, once per
    process) rather than in the first batch: a cluster's spare task process does it ahead."""
    _pools_for(seed)


def _pools_for(seed: int) -> _Pools:
    p = _pools.get(seed)
    if p is None:
        p = _pools[seed] = _Pools(seed)
    return p


def _times(cfg: GeneratorConfig, ids: np.ndarray) -> np.ndarray:
    return BASE_TIME_MS + (ids * cfg.delay_us // 1000).astype(np.int64)


def _last_person(ids: np.ndarray) -> np.ndarray:
    return ids // PROPORTION  # PERSON == 1: the epoch's person


def _last_auction(ids: np.ndarray) -> np.ndarray:
    epoch, off = ids // PROPORTION, ids % PROPORTION
    out = epoch * AUCTION + np.clip(off - PERSON, 0, AUCTION - 1)
    return np.where(off < PERSON, (epoch - 1) * AUCTION + AUCTION - 1, out)


def _next_person(rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
    num = _last_person(ids) + 1
    active = np.minimum(num, NUM_ACTIVE_PEOPLE)
    return num - active + (rng.random(len(ids)) * (active + PERSON_ID_LEAD)).astype(np.int64)


def _next_auction(rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
    last = _last_auction(ids)
    lo = np.maximum(last - NUM_IN_FLIGHT_AUCTIONS, 0)
    return lo + (rng.random(len(ids)) * (last - lo + 1 + AUCTION_ID_LEAD)).astype(np.int64)


def _price(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.round(10.0 ** (rng.random(n) * 6) * 100).astype(np.int64)


def _kind_ids(lo: int, hi: int, kind: str) -> np.ndarray:
    ids = np.arange(lo, hi, dtype=np.int64)
    off = ids % PROPORTION
    if kind == "person":
        return ids[off < PERSON]
    if kind == "auction":
        return ids[(off >= PERSON) & (off < PERSON + AUCTION)]
    return ids[off >= PERSON + AUCTION]


def _ts(ms: np.ndarray) -> pa.Array:
    return pa.array(ms, pa.int64()).view(TS)


def _make(cfg: GeneratorConfig, kind: str, ids: np.ndarray, rng: np.random.Generator) -> pa.RecordBatch:
    n = len(ids)
    pools = _pools_for(cfg.seed)
    t = _times(cfg, ids)
    pick = lambda pool: pool.take(pa.array(rng.integers(0, len(pool), n)))
    if kind == "person":
        return pa.RecordBatch.from_arrays(
            [pa.array(_last_person(ids) + FIRST_PERSON_ID), pick(pools.names), pick(pools.emails),
             pick(pools.cards), pick(pools.cities), pick(pools.states), _ts(t), pick(pools.extra)],
            schema=PERSON_SCHEMA)
    if kind == "auction":
        hot = rng.integers(0, HOT_SELLER_RATIO, n) > 0
        seller = np.where(hot, (_last_person(ids) // HOT_SELLER_RATIO) * HOT_SELLER_RATIO,
                          _next_person(rng, ids)) + FIRST_PERSON_ID
        initial = _price(rng, n)
        reserve = initial + _price(rng, n)
        horizon = int(NUM_IN_FLIGHT_AUCTIONS * PROPORTION // AUCTION * cfg.delay_us / 1000)
        expires = t + 1 + (rng.random(n) * max(2 * horizon, 1)).astype(np.int64)
        return pa.RecordBatch.from_arrays(
            [pa.array(_last_auction(ids) + FIRST_AUCTION_ID), pick(pools.items), pick(pools.descriptions),
             pa.array(initial), pa.array(reserve), _ts(t), _ts(expires), pa.array(seller),
             pa.array(FIRST_CATEGORY_ID + rng.integers(0, NUM_CATEGORIES, n)), pick(pools.extra)],
            schema=AUCTION_SCHEMA)
    hot_a = rng.integers(0, HOT_AUCTION_RATIO, n) > 0
    auction = np.where(hot_a, (_last_auction(ids) // HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO,
                       _next_auction(rng, ids)) + FIRST_AUCTION_ID
    hot_b = rng.integers(0, HOT_BIDDER_RATIO, n) > 0
    bidder = np.where(hot_b, (_last_person(ids) // HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1,
                      _next_person(rng, ids)) + FIRST_PERSON_ID
    return pa.RecordBatch.from_arrays(
        [pa.array(auction), pa.array(bidder), pa.array(_price(rng, n)), pick(pools.channels),
         pick(pools.urls), _ts(t), pick(pools.extra)], schema=BID_SCHEMA)


KINDS = {"person": 0, "auction": 1, "bid": 2}


def generate(cfg: GeneratorConfig, kind: str, first: int, last: int | None):
    """Batches of one kind of event for event ids ``first`` .. ``last`` - 1 (endless with None),
    one per chunk of 50,000 ids."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    chunk = first // CHUNK
    while last is None or chunk * CHUNK < last:
        lo = max(chunk * CHUNK, first)
        hi = (chunk + 1) * CHUNK if last is None else min((chunk + 1) * CHUNK, last)
        rng = np.random.default_rng([cfg.seed, chunk, KINDS[kind]])
        all_ids = _kind_ids(chunk * CHUNK, (chunk + 1) * CHUNK, kind)
        # draw for the whole chunk, then cut: the values do not depend on first/last
        batch = _make(cfg, kind, all_ids, rng)
        keep = (all_ids >= lo) & (all_ids < hi)
        if not keep.all():
            batch = batch.filter(pa.array(keep))
        yield batch
        chunk += 1
