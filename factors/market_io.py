"""Read a long-format daily market table (parquet / CSV / a folder of them) and validate it with polars.

Input: one row per (date, ticker) with columns ``date, ticker, open, high, low, close, volume``; optional
``vwap``, any extra numeric fields (e.g. ``market_cap``) and an optional boolean ``in_universe``
(point-in-time index membership). A file without ``in_universe`` whose one membership-like column
(``in_index``, ``index_member``, ``is_constituent``, ``in_csi300``, ``sp500_member``, ...; see
:data:`MEMBERSHIP_NAME`) holds only booleans / 0-1 values uses it as ``in_universe`` and says so in the
report (``membership_column``); two such columns are an error naming both. Column names are matched case-insensitively; ``symbol`` /
``instrument`` / ``code`` are accepted for ``ticker`` and ``datetime`` / ``trade_date`` / ``timestamp``
for ``date``. Dates may be Date/Datetime, ISO strings, ``YYYYMMDD`` strings or integers.

The rules (error vs documented repair) are listed in :mod:`factors.validation`. Errors raise
:class:`finllm.errors.DataError` with one line naming the file and the column/row; repairs are counted
in a :class:`~factors.validation.ValidationReport`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from factors.validation import ValidationReport
from finllm.errors import DataError

BASE_FIELDS = ("open", "high", "low", "close", "volume", "vwap")  # re-exported by factors.panel
PRICE_FIELDS = ("open", "high", "low", "close")
REQUIRED = ("date", "ticker", *PRICE_FIELDS, "volume")
ALIASES = {
    "symbol": "ticker", "instrument": "ticker", "code": "ticker", "asset": "ticker",
    "datetime": "date", "trade_date": "date", "timestamp": "date", "time": "date",
}
NULL_TOKENS = ["", "NA", "N/A", "na", "n/a", "null", "NULL", "None", "-"]
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz")
# Names a point-in-time index-membership column goes by (after lower-casing, spaces -> "_"): "in_index",
# "is_member", "index_constituent", "in_csi300", "sp500_member", "hs300_constituents", "universe", ...
MEMBERSHIP_NAME = re.compile(
    r"^(is_)?(in_)?((the_)?(index|universe)|[a-z&]*\d+[a-z]*)?_?(member|members|membership|constituents?|"
    r"universe|index)?$")
_MEMBERSHIP_WORDS = ("member", "constituent", "universe", "in_")
_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%m/%d/%Y", "%d.%m.%Y")
_NUMERIC = (pl.Float32, pl.Float64, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16,
            pl.UInt32, pl.UInt64)

RowRef = Callable[[int], str]
# polars can also raise a Rust panic (pyo3 PanicException, a BaseException) on some corrupt files
READ_ERRORS: tuple[type[BaseException], ...] = (Exception, pl.exceptions.PanicException)


def _short(exc: BaseException) -> str:
    """First line of a library error, trimmed: enough to act on, no hint blocks or tracebacks."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def is_csv(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in CSV_SUFFIXES)


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def row_ref_for(path: Path) -> RowRef:
    """How to name row ``i`` (0-based data row) in messages: CSV line numbers count the header."""
    if is_csv(path):
        return lambda i: f"line {int(i) + 2}"
    return lambda i: f"row {int(i) + 1}"


def read_columns(path: Path) -> list[str]:
    """Normalised column names of a parquet/CSV file, reading only its header/footer."""
    try:
        if is_parquet(path):
            with open(path, "rb") as fh:  # a file handle: polars never expands `[...]` in the name
                names = list(pl.read_parquet_schema(fh))
        elif is_csv(path):
            names = pl.read_csv(path, n_rows=0, separator=_sep(path), glob=False).columns
        else:
            raise DataError(f"{path}: unsupported file type (expected .parquet or .csv)")
    except DataError:
        raise
    except READ_ERRORS as exc:  # noqa: BLE001 - any reader failure is bad input here
        raise DataError(f"{path}: cannot read ({_short(exc)})") from None
    return [_canon(c) for c in names]


def _canon(name: str) -> str:
    key = name.strip().lower().replace(" ", "_")
    return ALIASES.get(key, key)


def _sep(path: Path) -> str:
    return "\t" if path.name.lower().endswith(".tsv") else ","


def _rename_map(path: Path, columns: Sequence[str]) -> dict[str, str]:
    """Map raw column names to canonical ones; a canonical name that appears twice is an error."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    # exact canonical names win over aliases (a file with both `date` and `datetime` keeps `date`)
    for raw in sorted(columns, key=lambda c: c.strip().lower() not in REQUIRED):
        canon = _canon(raw)
        if canon in seen:
            if raw.strip().lower() in ALIASES:
                continue  # alias shadowed by the real column (e.g. `datetime` next to `date`): dropped
            raise DataError(f"{path}: columns {seen[canon]!r} and {raw!r} both mean {canon!r}")
        seen[canon] = raw
        out[raw] = canon
    return out


def _read_raw(path: Path) -> pl.LazyFrame:
    """Lazy frame of the file with canonical column names and a ``_row`` index (0-based)."""
    if is_parquet(path):
        lf = pl.scan_parquet(path, glob=False)  # paths are literal: `glob[1].parquet` is that file
    elif is_csv(path):
        lf = _read_csv(path).lazy()
    else:
        raise DataError(f"{path}: unsupported file type (expected .parquet or .csv, or a Qlib dump folder)")
    try:
        names = lf.collect_schema().names()
    except READ_ERRORS as exc:  # noqa: BLE001 - truncated / not a parquet file
        raise DataError(f"{path}: not a readable {'parquet' if is_parquet(path) else 'CSV'} file "
                        f"({_short(exc)})") from None
    ren = _rename_map(path, names)
    lf = lf.select([pl.col(raw).alias(canon) for raw, canon in ren.items()])
    missing = [c for c in REQUIRED if c not in ren.values()]
    if missing:
        raise DataError(f"{path}: missing required column(s) {', '.join(missing)} "
                        f"(found: {', '.join(names) or 'none'})")
    return lf.with_row_index("_row")


def _read_csv(path: Path) -> pl.DataFrame:
    """Read a CSV; the date/ticker columns stay text (parsed later with row-precise errors)."""
    kw = dict(separator=_sep(path), null_values=NULL_TOKENS, infer_schema_length=10_000, glob=False)
    try:
        header = pl.read_csv(path, n_rows=0, separator=_sep(path), glob=False).columns
    except READ_ERRORS as exc:  # noqa: BLE001
        raise DataError(f"{path}: not a readable CSV file ({_short(exc)})") from None
    text_cols = {c: pl.String for c in header if _canon(c) in ("date", "ticker")}
    try:
        return pl.read_csv(path, schema_overrides=text_cols, **kw)
    except READ_ERRORS:  # noqa: BLE001 - a number column with text in it: re-read as text, cast later
        pass
    try:
        return pl.read_csv(path, infer_schema=False, **kw)
    except READ_ERRORS as exc:  # noqa: BLE001
        raise DataError(f"{path}: not a readable CSV file ({_short(exc)})") from None


def _to_date(value: str | dt.date | None, what: str) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value.date() if isinstance(value, dt.datetime) else value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise DataError(f"{what} {value!r} is not an ISO date (YYYY-MM-DD)") from None


def read_market_frame(path: str | Path, *, start=None, end=None,
                      tickers: Sequence[str] | None = None) -> tuple[pl.DataFrame, RowRef]:
    """Read one parquet/CSV file into a normalised polars frame (nothing validated beyond parsing).

    Returns ``(frame, row_ref)``: frame columns ``_row`` (0-based row in the file), ``date`` (pl.Date),
    ``ticker`` (str), the numeric fields and, if present, ``in_universe``; only rows in
    ``[start, end]`` and ``tickers`` are kept. ``row_ref(i)`` names row ``i`` for messages.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    start_d, end_d = _to_date(start, "start"), _to_date(end, "end")
    lf = _read_raw(path)
    ref = row_ref_for(path)
    schema = lf.collect_schema()
    date_is_temporal = schema["date"] in (pl.Date,) or isinstance(schema["date"], pl.Datetime)
    if date_is_temporal:  # push filters into the parquet scan
        lf = lf.with_columns(pl.col("date").cast(pl.Date) if schema["date"] == pl.Date
                             else pl.col("date").dt.date())
        lf = _filter(lf, start_d, end_d, tickers)
    try:
        df = lf.collect()
    except READ_ERRORS as exc:  # noqa: BLE001 - corrupt pages inside a parquet file, etc.
        raise DataError(f"{path}: cannot read ({_short(exc)})") from None
    if not date_is_temporal:
        df = df.with_columns(_parse_dates(df["date"], path, df["_row"], ref))
        df = _filter(df.lazy(), start_d, end_d, tickers).collect()
    else:
        n_null = df["date"].null_count()
        if n_null:
            i = int(df["date"].is_null().arg_max())
            raise DataError(f"{path}: column 'date' {ref(df['_row'][i])}: empty date ({n_null} rows)")
    return df, ref


def _filter(lf: pl.LazyFrame, start, end, tickers) -> pl.LazyFrame:
    lf = lf.with_columns(pl.col("ticker").cast(pl.String))
    no_date = pl.col("date").is_null()  # kept so that an empty date is still reported
    if start is not None:
        lf = lf.filter((pl.col("date") >= start) | no_date)
    if end is not None:
        lf = lf.filter((pl.col("date") <= end) | no_date)
    if tickers is not None:
        lf = lf.filter(pl.col("ticker").is_in(list(tickers)))
    return lf


def _parse_dates(col: pl.Series, path: Path, rows: pl.Series, ref: RowRef) -> pl.Series:
    """Parse a text/integer date column; the first unparseable value is an error naming its row."""
    if col.dtype in _NUMERIC:
        if col.dtype in (pl.Float32, pl.Float64):
            col = col.cast(pl.Int64, strict=False)
        col = col.cast(pl.String)
    elif col.dtype != pl.String:
        raise DataError(f"{path}: column 'date' has type {col.dtype}, expected dates")
    col = col.str.strip_chars()
    nulls = col.is_null()
    if nulls.any():
        i = int(nulls.arg_max())
        raise DataError(f"{path}: column 'date' {ref(rows[i])}: empty date ({int(nulls.sum())} rows)")
    sample = col.head(1000)
    best, best_ok = None, -1
    for fmt in _DATE_FORMATS:
        ok = int(sample.str.to_date(fmt, strict=False).is_not_null().sum())
        if ok > best_ok:
            best, best_ok = fmt, ok
    parsed = col.str.to_date(best, strict=False)
    if best_ok < len(sample) or parsed.null_count():  # datetime strings (e.g. "2020-01-02 00:00:00")
        try:
            alt = col.str.to_datetime(strict=False).dt.date()
        except Exception:  # noqa: BLE001 - polars found no datetime format either
            alt = None
        if alt is not None and alt.null_count() < parsed.null_count():
            parsed = alt
    bad = parsed.is_null()
    if bad.any():
        i = int(bad.arg_max())
        raise DataError(f"{path}: column 'date' {ref(rows[i])}: cannot parse {col[i]!r} as a date "
                        f"({int(bad.sum())} of {len(col)} rows bad)")
    return parsed.alias("date")


def _as_float(df: pl.DataFrame, name: str, path: Path, ref: RowRef) -> pl.Series:
    """Column ``name`` as Float32; text that is not a number is an error naming its row."""
    s = df[name]
    if s.dtype in _NUMERIC:
        return s.cast(pl.Float32)
    if s.dtype == pl.String:
        out = s.str.strip_chars().cast(pl.Float64, strict=False)
        bad = out.is_null() & s.is_not_null()
        if bad.any():
            i = int(bad.arg_max())
            raise DataError(f"{path}: column {name!r} {ref(df['_row'][i])}: cannot parse {s[i]!r} "
                            f"as a number ({int(bad.sum())} rows bad)")
        return out.cast(pl.Float32)
    if s.dtype == pl.Null:
        return pl.Series(name, [None] * len(s), dtype=pl.Float32)
    raise DataError(f"{path}: column {name!r} has type {s.dtype}, expected numbers")


def _boolean_like(s: pl.Series) -> bool:
    """Whether every non-null value of ``s`` reads as a boolean (the test :func:`_as_bool` applies)."""
    if s.dtype == pl.Boolean:
        return True
    if s.dtype in _NUMERIC:
        return bool(s.drop_nulls().cast(pl.Float64).is_in([0.0, 1.0]).all())
    if s.dtype == pl.String:
        return bool(s.drop_nulls().str.strip_chars().str.to_lowercase().is_in(list(_BOOL_WORDS)).all())
    return False


def membership_column(df: pl.DataFrame, path: Path) -> str | None:
    """The column to read as ``in_universe``: ``in_universe`` itself, else the one membership-like column
    (:data:`MEMBERSHIP_NAME`, a membership word in it, boolean-like values), else None. DataError when
    two columns qualify: which one is the universe is the user's choice, not a guess."""
    if "in_universe" in df.columns:
        return "in_universe"
    found = [c for c in df.columns if c not in ("date", "ticker", "_row") and MEMBERSHIP_NAME.match(c)
             and any(w in c for w in _MEMBERSHIP_WORDS + ("index",)) and _boolean_like(df[c])]
    if len(found) > 1:
        raise DataError(f"{path}: columns {found[0]!r} and {found[1]!r} both look like index membership; "
                        "rename the one that defines the universe to 'in_universe'")
    return found[0] if found else None


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "t": True, "y": True,
               "false": False, "0": False, "no": False, "f": False, "n": False}


def _as_bool(df: pl.DataFrame, path: Path, ref: RowRef) -> pl.Series:
    s = df["in_universe"]
    if s.dtype == pl.Boolean:
        return s
    if s.dtype == pl.String:
        low = s.str.strip_chars().str.to_lowercase()
        out = low.replace_strict(_BOOL_WORDS, default=None, return_dtype=pl.Boolean)
    elif s.dtype in _NUMERIC:
        num = s.cast(pl.Float64)
        n = pl.col("n")
        out = pl.DataFrame({"n": num}).select(
            pl.when(n == 1).then(True).when(n == 0).then(False).otherwise(None)).to_series()
    elif s.dtype == pl.Null:
        return pl.Series("in_universe", [None] * len(s), dtype=pl.Boolean)
    else:
        raise DataError(f"{path}: column 'in_universe' has type {s.dtype}, expected booleans")
    bad = out.is_null() & s.is_not_null()
    if bad.any():
        i = int(bad.arg_max())
        raise DataError(f"{path}: column 'in_universe' {ref(df['_row'][i])}: {s[i]!r} is not a boolean")
    return out.alias("in_universe")


def _first(df: pl.DataFrame, flag: str, ref: RowRef, count: int = 1) -> str:
    """'first: row 17, AAPL 2001-01-02' for the first row whose boolean column ``flag`` is set."""
    if not count:
        return ""
    i = int(df[flag].arg_max())
    return f"first: {ref(df['_row'][i])}, {df['ticker'][i]} {df['date'][i]}"


def validate_frame(df: pl.DataFrame, path: Path, ref: RowRef, report: ValidationReport, *,
                   check_order: bool = True) -> Validated:
    """Apply the validation rules to a frame from :func:`read_market_frame`.

    Returns a :class:`Validated` table; its ``fields`` are the base fields
    (``open, high, low, close, volume, vwap``) then extra numeric fields. Findings go into ``report``.
    ``check_order=False`` skips the ``unsorted`` note (for sources with no row order, e.g. Qlib dumps).
    """
    report.rows_read += df.height
    src = str(path)

    # -- errors: tickers, duplicates ------------------------------------------------------------
    if df["ticker"].dtype != pl.String:
        df = df.with_columns(pl.col("ticker").cast(pl.String))
    tick = df["ticker"]
    empty = tick.is_null() | (tick.str.len_bytes() == 0)
    if empty.any():
        i = int(empty.arg_max())
        raise DataError(f"{src}: column 'ticker' {ref(df['_row'][i])}: empty ticker "
                        f"({int(empty.sum())} rows)")
    days, d_idx = day_index(df["date"])
    tickers, t_idx = ticker_codes(tick)
    key = d_idx * len(tickers) + t_idx
    counts = np.bincount(key, minlength=len(days) * len(tickers))
    if counts.max(initial=0) > 1:
        dup = counts[key] > 1
        same = np.flatnonzero(key == key[int(dup.argmax())])[:3]
        where = ", ".join(ref(df["_row"][int(j)]) for j in same)
        raise DataError(f"{src}: duplicate (date, ticker) ({df['date'][int(same[0])]}, "
                        f"{tick[int(same[0])]}) at {where} ({int(dup.sum())} rows in duplicated pairs)")
    if check_order and len(key) > 1:
        report.add("unsorted", int(np.count_nonzero(np.diff(key) < 0)), "reordered",
                   "rows not in (date, ticker) order; the dense tensor is in date order")
    df = df.with_columns(pl.Series("_t", t_idx.astype(np.uint32)))

    member = membership_column(df, path)
    if member is not None and member != "in_universe":
        df = df.rename({member: "in_universe"})
        report.add("membership_column", 1, "read",
                   f"column {member!r} read as point-in-time index membership (in_universe)")

    # -- numeric columns --------------------------------------------------------------------------
    reserved = {"_row", "_t", "date", "ticker", "in_universe"}
    numeric_cols = [c for c in df.columns if c not in reserved]
    extras, ignored = [], []
    for c in numeric_cols:
        if c in BASE_FIELDS:
            df = df.with_columns(_as_float(df, c, path, ref))
        elif df[c].dtype in _NUMERIC:
            df = df.with_columns(df[c].cast(pl.Float32))
            extras.append(c)
        else:
            ignored.append(c)
    if ignored:
        df = df.drop(ignored)
        report.add("ignored_columns", len(ignored), "ignored",
                   f"non-numeric columns not loaded: {', '.join(ignored)}")
    if "in_universe" in df.columns:
        df = df.with_columns(_as_bool(df, path, ref))

    # -- row rules: flag columns built stage by stage (each a cheap op on the previous ones) ------
    col = pl.col
    stage1 = [col(c).is_finite().fill_null(False).alias(f"_fin_{c}") for c in PRICE_FIELDS]  # null/NaN/inf
    stage1 += [(col(c) > 0).fill_null(False).alias(f"_pos_{c}") for c in PRICE_FIELDS]
    stage1 += [col("volume").is_finite().fill_null(False).alias("_vol_fin")]
    miss = ~pl.all_horizontal(*[col(f"_fin_{c}") for c in PRICE_FIELDS])
    nonpos = ~pl.all_horizontal(*[col(f"_pos_{c}") for c in PRICE_FIELDS])
    stage2 = [miss.alias("missing_price"), (~miss & nonpos).alias("non_positive_price")]
    stage3 = [(~col("missing_price") & ~col("non_positive_price") & (col("high") < col("low")))
              .alias("high_below_low")]
    stage4 = [(~(col("missing_price") | col("non_positive_price") | col("high_below_low"))).alias("valid")]
    hi_oc, lo_oc = pl.max_horizontal("open", "close"), pl.min_horizontal("open", "close")
    valid = col("valid")
    stage5 = [
        (valid & ((col("high") < hi_oc) | (col("low") > lo_oc))).alias("range_contradiction"),
        (valid & ~col("_vol_fin")).alias("missing_volume"),
        (valid & col("_vol_fin") & (col("volume") < 0)).alias("negative_volume"),
        (valid & (col("volume") == 0)).alias("zero_volume"),
        *[(~col(f"_fin_{c}")).alias(f"m_{c}") for c in PRICE_FIELDS],
        *[(col(f"_fin_{c}") & ~col(f"_pos_{c}")).alias(f"p_{c}") for c in PRICE_FIELDS],
        *[(valid & ~col(c).is_finite().fill_null(False)).alias(f"x_{c}") for c in extras],
    ]
    has_vwap = "vwap" in df.columns
    if has_vwap:
        stage5.append((valid & ~(col("vwap").is_finite() & (col("vwap") > 0)).fill_null(False)).alias("bad_vwap"))
    has_uni = "in_universe" in df.columns
    if has_uni:
        stage5 += [col("in_universe").is_null().alias("in_universe_null"),
                   (valid & ~col("in_universe").fill_null(False)).alias("outside_universe")]
    df = (df.lazy().with_columns(stage1).with_columns(stage2).with_columns(stage3).with_columns(stage4)
          .with_columns(stage5).collect())
    rule_cols = [e.meta.output_name() for e in stage2 + stage3 + stage4 + stage5]
    n = df.select([col(k).sum() for k in rule_cols]).row(0, named=True)

    def per_col(prefix: str) -> str:
        return ", ".join(f"{c}: {n[prefix + c]}" for c in PRICE_FIELDS if n[prefix + c])

    def first(rule: str) -> str:
        return _first(df, rule, ref, n[rule])

    report.add("missing_price", n["missing_price"], "row invalid",
               f"open/high/low/close null, NaN or inf ({per_col('m_')}); {first('missing_price')}")
    report.add("non_positive_price", n["non_positive_price"], "row invalid",
               f"price <= 0 ({per_col('p_')}); {first('non_positive_price')}")
    report.add("high_below_low", n["high_below_low"], "row invalid", f"high < low; {first('high_below_low')}")
    report.add("range_contradiction", n["range_contradiction"], "repaired",
               "high/low did not cover open/close; widened to max/min(open, close, high/low); "
               + first("range_contradiction"))
    report.add("missing_volume", n["missing_volume"], "kept",
               "volume null/NaN: left NaN, row stays valid; " + first("missing_volume"))
    report.add("negative_volume", n["negative_volume"], "repaired",
               "volume < 0 set to NaN, row stays valid; " + first("negative_volume"))
    report.add("zero_volume", n["zero_volume"], "kept",
               "volume == 0 kept as 0 (no trades that day); row stays valid; " + first("zero_volume"))
    if has_vwap:
        report.add("bad_vwap", n["bad_vwap"], "repaired", "vwap null/NaN/<= 0 set to NaN; " + first("bad_vwap"))
    else:
        report.add("vwap_derived", n["valid"], "derived",
                   "no vwap column: vwap = (high + low + close) / 3 (typical price)")
    for c in extras:
        report.add("missing_extra", n[f"x_{c}"], "kept", f"{c} null/NaN on valid rows: left NaN")
    if has_uni:
        report.add("in_universe_null", n["in_universe_null"], "repaired", "in_universe null treated as False")
        report.add("outside_universe", n["outside_universe"], "kept",
                   "valid rows outside the universe: kept for time-series history, excluded from cross-sections")

    nan = pl.lit(float("nan"), dtype=pl.Float32)

    def out_col(expr: pl.Expr, name: str) -> pl.Expr:  # NaN on invalid rows and for nulls
        return pl.when(col("valid")).then(expr.cast(pl.Float32).fill_null(nan)).otherwise(nan).alias(name)

    if has_vwap:
        vwap = pl.when(col("vwap").is_finite() & (col("vwap") > 0)).then(col("vwap"))
    else:  # typical price, computed in float64 and rounded once
        high_w, low_w = pl.max_horizontal("high", hi_oc), pl.min_horizontal("low", lo_oc)  # after widening
        vwap = (high_w.cast(pl.Float64) + low_w + col("close")) / 3
    fields = list(BASE_FIELDS) + extras
    out = (df.lazy()
           .select("date", "_t",
                   out_col(col("open"), "open"),
                   out_col(pl.max_horizontal("high", hi_oc), "high"),   # widened (range_contradiction)
                   out_col(pl.min_horizontal("low", lo_oc), "low"),
                   out_col(col("close"), "close"),
                   out_col(pl.when(col("_vol_fin") & (col("volume") >= 0)).then(col("volume")), "volume"),
                   out_col(vwap, "vwap"),
                   *[out_col(pl.when(col(c).is_finite()).then(col(c)), c) for c in extras],
                   "valid",
                   (col("valid") & col("in_universe").fill_null(False)).alias("in_universe") if has_uni
                   else col("valid").alias("in_universe"))
           .collect())
    report.rows_valid += int(out["valid"].sum())
    return Validated(out, tickers, fields)


@dataclass
class Validated:
    """A validated long table: ``frame`` has ``date, _t, <fields>..., valid, in_universe`` where
    ``_t`` (u32) indexes ``tickers`` (sorted); fields are Float32, NaN on invalid rows."""

    frame: pl.DataFrame
    tickers: list[str]
    fields: list[str]


def day_index(dates: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(days (D,) datetime64[D] sorted unique, idx (N,) int64 position of each row's day) in O(N)."""
    d = dates.cast(pl.Int32).to_numpy()
    if not len(d):
        return np.empty(0, dtype="datetime64[D]"), np.empty(0, dtype=np.int64)
    lo = int(d.min())
    present = np.bincount(d - lo) > 0
    lut = np.cumsum(present) - 1
    days = (np.flatnonzero(present) + lo).astype("datetime64[D]")
    return days, lut[d - lo].astype(np.int64)


def ticker_codes(tickers: pl.Series) -> tuple[list[str], np.ndarray]:
    """(sorted unique tickers, (N,) int64 code of each row) via a polars Enum cast."""
    uniq = tickers.unique().sort().to_list()
    codes = tickers.cast(pl.Enum(uniq)).to_physical().to_numpy().astype(np.int64)
    return uniq, codes
