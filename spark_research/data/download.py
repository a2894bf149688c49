"""History downloads from any of ccxt's exchanges into the store: bars (``fetch_ohlcv``) and
trades (``fetch_trades``), page by page, resumable.

* **Pagination** — each page starts where the previous one ended (``since`` = the last bar's
  open time + one timeframe; for trades the last trade's time, trade ids already seen dropped).
* **Rate limits** — ccxt's own throttle (``enableRateLimit``, the venue's ``rateLimit``) spaces the
  requests; HTTP 429/418, 5xx, timeouts and dropped connections (ccxt's ``NetworkError`` family) are
  retried with doubling pauses (or the venue's ``Retry-After``), at most
  :attr:`DownloadConfig.max_retries` times per page.
* **Resume** — every page lands in the store before the next one is asked for, and the time span
  it covered is recorded in a small ledger on the store's filesystem
  (``<store>/_downloads/<exchange>/<kind>-<symbol>[-<timeframe>].json``). A rerun fetches only what
  neither the ledger nor an unbroken run of stored bars covers, so an interrupted download
  continues where it stopped and nothing is stored twice (the store upserts by time / trade id).
  A span the venue had no bars for (:attr:`DownloadReport.gaps`, e.g. history older than Kraken's
  latest 720 candles) counts as done once it is a day old; ``force=True`` asks for everything again.
* **Validation** — rows go through :func:`~spark_research.data.schema.validate_bars` /
  :func:`~spark_research.data.schema.validate_trades`; a bad row (``high < low``, NaN price ...)
  is reported by row, field and value (:attr:`DownloadReport.bad_rows`) and left out, the good
  rows of its page land, and nothing already stored is touched.
* **Progress** — a ``tqdm.auto`` bar (a widget in JupyterLab, text in a terminal).

Example (offline: ``api_base`` points every ccxt URL at a local server; see
``tests/data/test_download.py``)::

    >>> from spark_research.data.download import ccxt_exchange, download_bars
    >>> ex = ccxt_exchange("binance", api_base="http://127.0.0.1:8080")   # doctest: +SKIP
    >>> report = download_bars(ex, "BTC/USDT", "1m", "2024-01-01", "2024-01-02", store)  # doctest: +SKIP
    >>> report.rows, report.bad_rows  # doctest: +SKIP
    (1440, [])
"""
from __future__ import annotations

import logging
import math
import os
import re
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson
import pandas as pd

from spark_research.data.schema import DataValidationError, validate_bars, validate_trades
from spark_research.data.store import BarStore

log = logging.getLogger(__name__)

_STORE_SYMBOL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: a span the venue had nothing for is recorded as done only once it is this old (venues publish late)
_SETTLE_MS = 86_400_000


class DownloadError(RuntimeError):
    """A download could not go on (the venue kept failing, an unusable answer); rerun to resume."""


@dataclass(frozen=True)
class DownloadConfig:
    """How a download pages, retries and reports.

    Example::

        >>> DownloadConfig(page_limit=500, max_retries=3).backoff_s
        0.5
    """

    page_limit: int | None = None  #: rows per request (None: the venue's maximum as ccxt knows it, else 500)
    max_retries: int = 5  #: retries of one request after a 429/5xx/timeout/dropped connection
    backoff_s: float = 0.5  #: first pause before a retry (doubles each time; a ``Retry-After`` wins)
    max_backoff_s: float = 30.0  #: longest pause between two attempts
    trades_window_ms: int = 3_600_000  #: how far an empty trades page moves on (Binance asks 1 h windows)
    max_seconds: float = 6 * 3600.0  #: stop (resumable) after this long
    progress: bool = True  #: show a tqdm bar

    def __post_init__(self) -> None:
        if self.page_limit is not None and not (isinstance(self.page_limit, int) and self.page_limit >= 1):
            raise ValueError(f"DownloadConfig.page_limit must be None or an integer >= 1, got {self.page_limit!r}")
        if not (isinstance(self.max_retries, int) and self.max_retries >= 0):
            raise ValueError(f"DownloadConfig.max_retries must be an integer >= 0, got {self.max_retries!r}")
        for name in ("backoff_s", "max_backoff_s", "max_seconds"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"DownloadConfig.{name} must be a finite number >= 0, got {v!r}")
        if not (isinstance(self.trades_window_ms, int) and self.trades_window_ms >= 1):
            raise ValueError(f"DownloadConfig.trades_window_ms must be an integer >= 1, got {self.trades_window_ms!r}")


@dataclass(frozen=True)
class BadRow:
    """One row the venue sent that failed validation (it was not stored)."""

    symbol: str
    row: object  #: the bar's open time, or the trade's id
    field: str
    value: object
    reason: str

    def __str__(self) -> str:
        return f"{self.symbol} @ {self.row}: field {self.field!r} = {self.value!r}: {self.reason}"


@dataclass
class DownloadReport:
    """What a download did (``download_bars`` / ``download_trades`` return it)."""

    exchange: str
    symbol: str  #: the venue's (ccxt unified) symbol
    store_symbol: str  #: the symbol in the store
    kind: str  #: "bars" or "trades"
    since: pd.Timestamp
    until: pd.Timestamp
    requests: int = 0  #: requests sent (retries included)
    retries: int = 0
    pages: int = 0  #: pages with at least one new row
    rows: int = 0  #: rows written to the store
    bad_rows: list[BadRow] = field(default_factory=list)
    skipped: list[tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=list)  #: already stored, not fetched
    fetched: list[tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=list)  #: spans asked of the venue
    gaps: list[tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=list)  #: spans the venue had no bars for

    def summary(self) -> str:
        """One line for a terminal."""
        return (f"{self.exchange} {self.symbol} {self.kind} -> {self.store_symbol}: {self.rows} rows in "
                f"{self.pages} pages ({self.requests} requests, {self.retries} retries, "
                f"{len(self.skipped)} span(s) already stored, {len(self.bad_rows)} bad row(s) skipped, "
                f"{len(self.gaps)} gap(s) at the venue)")


# --------------------------------------------------------------------------- ccxt instances
def ccxt_exchange(exchange_id: str, *, api_base: str | None = None, **config: Any):
    """A ccxt exchange by id with rate limiting on; ``api_base`` (``http://host:port``) replaces the
    scheme and host of every URL in its ``urls['api']`` (a testnet, a proxy, or a local test server),
    ``config`` goes to the ccxt constructor (``apiKey``, ``secret``, ``timeout``, ``options`` ...).

    Example::

        >>> ex = ccxt_exchange("binance", api_base="http://127.0.0.1:9")
        >>> ex.urls["api"]["public"], ex.enableRateLimit
        ('http://127.0.0.1:9/api/v3', True)
    """
    import ccxt

    if exchange_id not in ccxt.exchanges:
        raise ValueError(f"exchange {exchange_id!r} is not one of ccxt's {len(ccxt.exchanges)} exchanges "
                         f"(e.g. binance, okx, kraken, bybit, coinbase)")
    ex = getattr(ccxt, exchange_id)({"enableRateLimit": True, **config})
    if api_base is not None:
        rebase_urls(ex, api_base)
    return ex


def rebase_urls(exchange, api_base: str) -> None:
    """Point every URL of ``exchange.urls['api']`` at ``api_base`` (scheme and host; paths kept).

    Example::

        >>> import ccxt
        >>> ex = ccxt.okx()
        >>> rebase_urls(ex, "http://127.0.0.1:8080")
        >>> ex.urls["api"]["rest"]
        'http://127.0.0.1:8080'
    """
    base = urllib.parse.urlsplit(api_base)
    if base.scheme not in ("http", "https") or not base.netloc or base.path not in ("", "/"):
        raise ValueError(f"api_base must be http(s)://host[:port] without a path, got {api_base!r}")

    def swap(value: Any) -> Any:
        if isinstance(value, str):
            url = urllib.parse.urlsplit(value)
            return urllib.parse.urlunsplit((base.scheme, base.netloc, url.path, url.query, url.fragment))
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    exchange.urls = {**exchange.urls, "api": swap(exchange.urls["api"])}


# --------------------------------------------------------------------------- helpers
def _ms(value: object, name: str) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a time (ISO text, datetime or epoch ms), got {value!r}") from exc
    if ts is pd.NaT:
        raise ValueError(f"{name} must be a time, got {value!r}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.value // 1_000_000


def _ts(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def store_symbol_for(symbol: str) -> str:
    """The store's name of a ccxt symbol: ``BTC/USDT`` → ``BTCUSDT``, ``BTC/USDT:USDT`` → ``BTCUSDT-USDT``.

    Example::

        >>> store_symbol_for("ETH/BTC")
        'ETHBTC'
    """
    return symbol.replace("/", "").replace(":", "-")


def _page_limit(exchange, config: DownloadConfig, method: str) -> int:
    known = None
    features = getattr(exchange, "features", None) or {}
    for market_type in ("spot", "swap"):
        spec = features.get(market_type) or {}
        spec = spec.get("linear", spec) if market_type == "swap" else spec
        limit = (spec.get(method) or {}).get("limit") if isinstance(spec, dict) else None
        if isinstance(limit, int) and limit > 0:
            known = limit
            break
    if config.page_limit is None:
        return known or 500
    return min(config.page_limit, known) if known else config.page_limit


class _Ledger:
    """Time spans ``[start_ms, end_ms)`` already downloaded, kept in a small JSON file on the store's
    filesystem (replaced atomically on a local store, one PUT on an object store)."""

    def __init__(self, store: BarStore, relpath: str):
        self.store = store
        self.path = f"{str(store.url).rstrip('/')}/{relpath}"
        self.spans: list[list[int]] = []
        fs = store.fs
        if fs.exists(self.path):
            try:
                self.spans = [[int(a), int(b)] for a, b in orjson.loads(fs.cat_file(self.path))["spans"]]
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DownloadError(f"download ledger {self.path} is unreadable ({exc}): delete it to download "
                                    f"the range again") from exc

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        self.spans = _merge([*self.spans, [start, end]])
        data = orjson.dumps({"spans": self.spans})
        if isinstance(self.store.root, Path):
            path = Path(self.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.json")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        else:
            self.store.fs.pipe_file(self.path, data)


def _merge(spans: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _missing(start: int, end: int, covered: list[list[int]]) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` no span of ``covered`` (merged, sorted) holds."""
    out, cursor = [], start
    for a, b in covered:
        if b <= cursor or a >= end:
            continue
        if a > cursor:
            out.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < end:
        out.append((cursor, end))
    return out


def _stored_runs(store: BarStore, symbol: str, start: int, end: int, tf_ms: int) -> list[list[int]]:
    """Unbroken runs of stored bars in ``[start, end)`` as spans: they need no download."""
    try:
        stamps = store.load_bars(symbol, _ts(start), _ts(end), columns=["timestamp"])["timestamp"]
    except KeyError:
        return []
    ms = pd.DatetimeIndex(stamps).asi8 // 1_000_000
    if not len(ms):
        return []
    breaks = np.flatnonzero(np.diff(ms) != tf_ms)
    firsts = np.r_[0, breaks + 1]
    lasts = np.r_[breaks, len(ms) - 1]
    return [[int(ms[a]), int(ms[b]) + tf_ms] for a, b in zip(firsts, lasts)]


def _without_bad_rows(df: pd.DataFrame, validate: Callable[[pd.DataFrame], pd.DataFrame], row_col: str,
                      symbol: str) -> tuple[pd.DataFrame, list[BadRow]]:
    """Validate ``df``; each row the schema rejects is reported and dropped, the rest returned valid."""
    bad: list[BadRow] = []
    df = df.reset_index(drop=True)
    for _ in range(len(df) + 1):  # each pass drops one row
        try:
            return validate(df), bad
        except DataValidationError as err:
            col = df[row_col]
            hits = np.flatnonzero(col.isna().to_numpy() if err.row is None or err.row is pd.NaT
                                  else (col == err.row).to_numpy())
            if not hits.size:
                raise  # not about one row (a missing column): the page as a whole is unusable
            # a duplicate is reported on its second occurrence: drop that one
            pos = int(hits[-1] if "duplicate" in err.reason else hits[0])
            bad.append(BadRow(symbol, err.row, err.field, err.value, err.reason))
            log.warning("bad row skipped: %s", bad[-1])
            df = df.drop(index=df.index[pos]).reset_index(drop=True)
    raise AssertionError("unreachable: every pass drops a row")


class _Pager:
    """Calls the venue with retries and counts them in the report."""

    def __init__(self, exchange, config: DownloadConfig, report: DownloadReport):
        self.exchange, self.config, self.report = exchange, config, report
        self.deadline = time.monotonic() + config.max_seconds

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import ccxt

        pause = self.config.backoff_s
        for attempt in range(self.config.max_retries + 1):
            if time.monotonic() > self.deadline:
                raise DownloadError(f"{self.exchange.id}: download stopped after {self.config.max_seconds:g} s "
                                    f"(DownloadConfig.max_seconds); rerun to resume")
            self.report.requests += 1
            try:
                return getattr(self.exchange, method)(*args, **kwargs)
            except ccxt.NetworkError as exc:  # 429/418, 5xx, timeouts, dropped connections
                if attempt == self.config.max_retries:
                    raise DownloadError(f"{self.exchange.id}: {method} failed {attempt + 1} times, last: "
                                        f"{type(exc).__name__}: {exc}; rerun to resume") from exc
                wait = min(self._retry_after() or pause, self.config.max_backoff_s)
                log.warning("%s: %s: %s; retry %d in %.2f s", self.exchange.id, method, type(exc).__name__,
                            attempt + 1, wait)
                self.report.retries += 1
                time.sleep(wait)
                pause *= 2
            except ccxt.BaseError as exc:
                raise DownloadError(f"{self.exchange.id}: {method} refused: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def _retry_after(self) -> float | None:
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        try:
            value = float(headers.get("Retry-After"))
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) and value >= 0 else None


def _prepare(exchange, symbol: str, since: object, until: object, store_symbol: str | None,
             tf_ms: int = 1) -> tuple[Any, str, int, int]:
    if isinstance(exchange, str):
        exchange = ccxt_exchange(exchange)
    store_symbol = store_symbol or store_symbol_for(symbol)
    if not _STORE_SYMBOL.match(store_symbol):
        raise ValueError(f"store_symbol must be 1-64 of [A-Za-z0-9_.-], got {store_symbol!r}")
    start = _ms(since, "since")
    now = exchange.milliseconds()
    end = now if until is None else _ms(until, "until")
    end = min(end, now // tf_ms * tf_ms)  # the bar still forming is not history yet
    if start >= end:
        raise ValueError(f"since must be before until (and before now): since={_ts(start)}, until={_ts(end)}")
    return exchange, store_symbol, start, end


def _load_markets(exchange, pager: _Pager, symbol: str) -> None:
    if exchange.markets is None:
        pager.call("load_markets")
    if symbol not in exchange.markets:
        close = [s for s in exchange.markets if s.replace("/", "").startswith(symbol.replace("/", "")[:3])][:5]
        raise ValueError(f"symbol {symbol!r} is not a market of {exchange.id} (ccxt unified form BASE/QUOTE; "
                         f"similar: {close})")


def _ledger(store: BarStore, exchange_id: str, kind: str, store_symbol: str, timeframe: str = "") -> _Ledger:
    name = f"{kind}-{store_symbol}" + (f"-{timeframe}" if timeframe else "")
    return _Ledger(store, f"_downloads/{exchange_id}/{name}.json")


def _bar(total: int, desc: str, unit: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False)


# --------------------------------------------------------------------------- bars
def download_bars(exchange, symbol: str, timeframe: str, since: object, until: object, store: BarStore, *,
                  store_symbol: str | None = None, config: DownloadConfig | None = None,
                  force: bool = False) -> DownloadReport:
    """Download ``symbol``'s ``timeframe`` bars with open times in ``[since, until)`` into ``store``.

    ``exchange`` is a ccxt exchange (see :func:`ccxt_exchange`) or its id; ``symbol`` is ccxt's unified
    form (``BTC/USDT``); the store keeps it as ``store_symbol`` (default :func:`store_symbol_for`).
    Spans already downloaded, or held by unbroken runs of stored bars, are skipped unless ``force``.

    Example::

        >>> ex = ccxt_exchange("binance", api_base="http://127.0.0.1:8080")  # doctest: +SKIP
        >>> store = BarStore("data/store")  # doctest: +SKIP
        >>> download_bars(ex, "BTC/USDT", "1m", "2024-01-01", "2024-01-02", store).rows  # doctest: +SKIP
        1440
    """
    config = config or DownloadConfig()
    if isinstance(exchange, str):
        exchange = ccxt_exchange(exchange)
    if exchange.timeframes and timeframe not in exchange.timeframes:
        raise ValueError(f"timeframe {timeframe!r} is not offered by {exchange.id}; "
                         f"it offers {sorted(exchange.timeframes)}")
    try:
        tf_ms = int(exchange.parse_timeframe(timeframe) * 1000)
    except Exception as exc:  # ccxt raises a bare NotSupported/ValueError on nonsense
        raise ValueError(f"timeframe must be like 1m, 5m, 1h, 1d, got {timeframe!r}") from exc
    exchange, store_symbol, start, end = _prepare(exchange, symbol, since, until, store_symbol, tf_ms)
    start = -(-start // tf_ms) * tf_ms  # the first bar opening at or after since
    report = DownloadReport(exchange.id, symbol, store_symbol, "bars", _ts(start), _ts(end))
    pager = _Pager(exchange, config, report)
    ledger = _ledger(store, exchange.id, "bars", store_symbol, timeframe)
    covered = [] if force else _merge([*ledger.spans, *_stored_runs(store, store_symbol, start, end, tf_ms)])
    todo = _missing(start, end, covered) if start < end else []
    report.skipped = [(_ts(a), _ts(b)) for a, b in _missing(start, end, [[a, b] for a, b in todo])]
    if not todo:
        return report
    _load_markets(exchange, pager, symbol)
    limit = _page_limit(exchange, config, "fetchOHLCV")
    bar = _bar(sum(b - a for a, b in todo) // tf_ms, f"{exchange.id} {symbol} {timeframe}", "bar", config.progress)
    try:
        for a, b in todo:
            report.fetched.append((_ts(a), _ts(b)))
            cursor = a
            for _ in range((b - a) // tf_ms + 2):  # every page moves the cursor at least one bar
                if cursor >= b:
                    break
                raw = pager.call("fetch_ohlcv", symbol, timeframe, since=cursor, limit=limit)
                rows = [r for r in raw or [] if r and r[0] is not None and cursor <= r[0] < b]
                if rows:
                    nxt = max(r[0] for r in rows) + tf_ms
                    opens = sorted(r[0] for r in rows)
                    report.gaps += [(_ts(x + tf_ms), _ts(y)) for x, y in zip([cursor - tf_ms, *opens], opens)
                                    if y - x > tf_ms]
                    _write_bars(store, rows, store_symbol, report)
                    report.pages += 1
                elif any(r and r[0] is not None and r[0] >= b for r in raw or []):
                    nxt = b  # the venue's next bar is past the range: nothing left in it
                    report.gaps.append((_ts(cursor), _ts(b)))
                else:  # nothing from cursor on within one page's span: the venue has a hole there
                    nxt = min(b, cursor + limit * tf_ms)
                    report.gaps.append((_ts(cursor), _ts(nxt)))
                if rows or nxt <= exchange.milliseconds() - _SETTLE_MS:
                    ledger.add(cursor, nxt)  # a recent hole may still fill: a rerun asks again
                bar.update((nxt - cursor) // tf_ms)
                cursor = nxt
            else:
                raise DownloadError(f"{exchange.id}: pages of {symbol} did not advance past {_ts(cursor)}")
    finally:
        bar.close()
    report.gaps = _join(report.gaps)
    return report


def _join(spans: list[tuple[pd.Timestamp, pd.Timestamp]]) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    out: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _write_bars(store: BarStore, rows: list[list], store_symbol: str, report: DownloadReport) -> None:
    arr = [list(r[:6]) + [None] * (6 - len(r[:6])) for r in rows]
    frame = pd.DataFrame(arr, columns=["ms", "open", "high", "low", "close", "volume"])
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame.insert(0, "timestamp", pd.to_datetime(frame.pop("ms").astype("int64"), unit="ms", utc=True))
    frame["symbol"] = store_symbol
    good, bad = _without_bad_rows(frame, validate_bars, "timestamp", store_symbol)
    report.bad_rows += bad
    if len(good):
        store.write_bars(good)
        report.rows += len(good)


# --------------------------------------------------------------------------- trades
def download_trades(exchange, symbol: str, since: object, until: object, store: BarStore, *,
                    store_symbol: str | None = None, config: DownloadConfig | None = None,
                    force: bool = False) -> DownloadReport:
    """Download ``symbol``'s public trades with times in ``[since, until)`` into ``store``.

    Trade ids become the store's ``seq`` (they must be integers, as on Binance, OKX, Coinbase,
    Kraken); ``side`` is the taker's side. Resumes like :func:`download_bars` (by the ledger).

    Example::

        >>> ex = ccxt_exchange("binance", api_base="http://127.0.0.1:8080")  # doctest: +SKIP
        >>> store = BarStore("data/store")  # doctest: +SKIP
        >>> download_trades(ex, "BTC/USDT", "2024-01-01", "2024-01-01 01:00", store).rows  # doctest: +SKIP
        24571
    """
    config = config or DownloadConfig()
    exchange, store_symbol, start, end = _prepare(exchange, symbol, since, until, store_symbol)
    report = DownloadReport(exchange.id, symbol, store_symbol, "trades", _ts(start), _ts(end))
    pager = _Pager(exchange, config, report)
    ledger = _ledger(store, exchange.id, "trades", store_symbol)
    todo = _missing(start, end, [] if force else ledger.spans)
    report.skipped = [(_ts(a), _ts(b)) for a, b in _missing(start, end, [[a, b] for a, b in todo])]
    if not todo:
        return report
    _load_markets(exchange, pager, symbol)
    limit = _page_limit(exchange, config, "fetchTrades")
    bar = _bar(sum(b - a for a, b in todo) // 1000, f"{exchange.id} {symbol} trades", "s", config.progress)
    try:
        for a, b in todo:
            report.fetched.append((_ts(a), _ts(b)))
            cursor, last_id = a, None
            for _ in range(b - a + 2):  # every page moves the cursor at least 1 ms, or fails
                if cursor >= b:
                    break
                raw = [t for t in pager.call("fetch_trades", symbol, since=cursor, limit=limit) or []
                       if t.get("timestamp") is not None]
                pool = [t for t in raw if cursor <= t["timestamp"] < b]
                fresh = [t for t in pool if last_id is None or _trade_id(t, symbol) > last_id]
                if fresh:
                    _write_trades(store, fresh, symbol, store_symbol, report)
                    report.pages += 1
                    last_id = max(_trade_id(t, symbol) for t in fresh)
                if any(t["timestamp"] >= b for t in raw):  # the page reaches past the range: all of it is in
                    nxt = b
                elif not pool:  # a quiet window at the venue
                    nxt = min(b, cursor + config.trades_window_ms)
                elif len(raw) >= limit:  # a full page: the newest millisecond may go on: ask from it again
                    nxt = max(t["timestamp"] for t in pool)
                    if nxt == cursor and not fresh:
                        raise DownloadError(f"{exchange.id}: more than {limit} trades of {symbol} in the "
                                            f"millisecond {_ts(cursor)}: raise DownloadConfig.page_limit")
                else:  # the venue sent all it has from cursor on (up to its window)
                    nxt = max(t["timestamp"] for t in pool) + 1
                if raw or nxt <= exchange.milliseconds() - _SETTLE_MS:
                    ledger.add(cursor, nxt)  # a recent quiet window may still fill: a rerun asks again
                bar.update((nxt - cursor) // 1000)
                cursor = nxt
            else:
                raise DownloadError(f"{exchange.id}: trade pages of {symbol} did not advance past {_ts(cursor)}")
    finally:
        bar.close()
    return report


def _trade_id(trade: dict, symbol: str) -> int:
    tid = trade.get("id")
    try:
        return int(tid)
    except (TypeError, ValueError):
        raise DownloadError(f"{symbol}: field 'id' = {tid!r} of a trade at {trade.get('datetime')} is not an "
                            f"integer: this venue's trades cannot be stored by id") from None


def _write_trades(store: BarStore, trades: list[dict], symbol: str, store_symbol: str,
                  report: DownloadReport) -> None:
    frame = pd.DataFrame({
        "seq": [_trade_id(t, symbol) for t in trades],
        "ts": pd.to_datetime([int(t["timestamp"]) for t in trades], unit="ms", utc=True),
        "price": pd.to_numeric(pd.Series([t.get("price") for t in trades], dtype=object), errors="coerce"),
        "qty": pd.to_numeric(pd.Series([t.get("amount") for t in trades], dtype=object), errors="coerce"),
        "side": [str(t.get("side")) for t in trades],
        "symbol": store_symbol,
    }).sort_values("seq", kind="stable")
    good, bad = _without_bad_rows(frame, validate_trades, "seq", store_symbol)
    report.bad_rows += bad
    if len(good):
        store.write_trades(good)
        report.rows += len(good)


__all__ = ["BadRow", "DownloadConfig", "DownloadError", "DownloadReport", "ccxt_exchange", "download_bars",
           "download_trades", "rebase_urls", "store_symbol_for"]
