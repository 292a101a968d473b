"""flowforge/datetime: parse, format, shift and convert dates and times across time zones.

The guest has no system time-zone database and no file system at run time, so the IANA
zones come from the `tzdata` package and are read into memory when the module is
imported (at build time; the snapshot keeps them). It has no clock either: every
operation works on a value from the input.
"""

import datetime as dt
import importlib.resources
import io
import zoneinfo
from typing import Any

from flowforge_connector import Failure


def _read_zones() -> dict[str, bytes]:
    zones: dict[str, bytes] = {}
    pending = [(importlib.resources.files("tzdata").joinpath("zoneinfo"), "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append((entry, f"{prefix}{entry.name}/"))
            elif not entry.name.startswith("_") and "." not in entry.name:
                zones[prefix + entry.name] = entry.read_bytes()
    return zones


ZONES = _read_zones()
_ZONE_NAMES = {name.lower(): name for name in ZONES}
_OPERATIONS = ("parse", "format", "shift", "convert")


def zone(name: Any, field: str) -> dt.tzinfo:
    if not isinstance(name, str) or name.lower() not in _ZONE_NAMES:
        raise Failure.invalid_input(
            f"{field}: {name!r} is not an IANA time zone such as Europe/Paris"
        )
    key = _ZONE_NAMES[name.lower()]
    return zoneinfo.ZoneInfo.from_file(io.BytesIO(ZONES[key]), key=key)


def _param(config: dict[str, Any], input: dict[str, Any], name: str, default: Any = None) -> Any:
    """An operation parameter: the input's value wins over the config's."""
    return input.get(name, config.get(name, default))


def parse(value: Any, formats: list[str], default_zone: dt.tzinfo) -> dt.datetime:
    """An aware datetime from ISO 8601 text, a strptime format, or epoch seconds."""
    if isinstance(value, bool) or value is None:
        raise Failure.invalid_input("input.value must be a date/time string or epoch seconds")
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC).astimezone(default_zone)
    if not isinstance(value, str):
        raise Failure.invalid_input("input.value must be a date/time string or epoch seconds")
    parsed: dt.datetime | None = None
    for fmt in formats:
        try:
            parsed = dt.datetime.strptime(value, fmt)
            break
        except ValueError:
            continue
    if parsed is None and not formats:
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
    if parsed is None:
        tried = ", ".join(repr(f) for f in formats) if formats else "ISO 8601"
        raise Failure.invalid_input(f"{value!r} does not match {tried}")
    if parsed.tzinfo is None:
        # A wall-clock time in the default zone; fold=0 picks the first of a repeated hour.
        parsed = parsed.replace(tzinfo=default_zone)
    return parsed


def _zone_name(moment: dt.datetime) -> str:
    tz = moment.tzinfo
    if isinstance(tz, zoneinfo.ZoneInfo) and tz.key:
        return tz.key
    return "UTC" if moment.utcoffset() == dt.timedelta(0) else f"UTC{_offset(moment)}"


def _offset(moment: dt.datetime) -> str:
    offset = moment.utcoffset() or dt.timedelta(0)
    sign = "-" if offset < dt.timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def describe(moment: dt.datetime) -> dict[str, Any]:
    moment = _normalise(moment)
    timestamp = moment.timestamp()
    return {
        "iso": moment.isoformat(),
        "timezone": _zone_name(moment),
        "utc_offset": _offset(moment),
        "timestamp": int(timestamp) if timestamp.is_integer() else timestamp,
        "weekday": moment.strftime("%A"),
    }


def _normalise(moment: dt.datetime) -> dt.datetime:
    """Resolve a wall-clock time that a DST change skipped or repeated to a real instant."""
    tz = moment.tzinfo
    if tz is None:
        return moment
    return moment.astimezone(dt.UTC).astimezone(tz)


def _add_business_days(moment: dt.datetime, count: int) -> dt.datetime:
    step = 1 if count >= 0 else -1
    remaining = abs(count)
    while remaining:
        moment += dt.timedelta(days=step)
        if moment.weekday() < 5:
            remaining -= 1
    return moment


def shift(
    moment: dt.datetime, days: int, hours: float, minutes: float, business_days: int
) -> dt.datetime:
    # Days move the wall clock (9:00 stays 9:00 across a DST change); hours and minutes
    # are elapsed time, added on the UTC timeline.
    moment = _add_business_days(moment + dt.timedelta(days=days), business_days)
    moment = _normalise(moment)
    elapsed = dt.timedelta(hours=hours, minutes=minutes)
    return (moment.astimezone(dt.UTC) + elapsed).astimezone(moment.tzinfo)


def _number(value: Any, name: str, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Failure.invalid_input(f"{name} must be a number")
    if integer and not float(value).is_integer():
        raise Failure.invalid_input(f"{name} must be a whole number")
    return int(value) if integer else value


def handle(config: dict[str, Any], input: Any) -> dict[str, Any]:
    operation = config.get("operation")
    if operation not in _OPERATIONS:
        raise Failure.invalid_config(f"config.operation must be one of {', '.join(_OPERATIONS)}")
    if not isinstance(input, dict) or "value" not in input:
        raise Failure.invalid_input("input.value is required")
    formats = _param(config, input, "formats", [])
    if isinstance(formats, str):
        formats = [formats]
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        raise Failure.invalid_config("formats must be a strptime format or a list of them")
    default_zone = zone(_param(config, input, "timezone", "UTC"), "timezone")
    moment = parse(input["value"], formats, default_zone)

    if operation == "convert":
        target = _param(config, input, "to")
        if target is None:
            raise Failure.invalid_config("convert needs `to`, the target time zone")
        moment = moment.astimezone(zone(target, "to"))
    elif operation == "shift":
        moment = shift(
            moment,
            days=_number(_param(config, input, "days", 0), "days", integer=True),
            hours=_number(_param(config, input, "hours", 0), "hours"),
            minutes=_number(_param(config, input, "minutes", 0), "minutes"),
            business_days=_number(
                _param(config, input, "business_days", 0), "business_days", integer=True
            ),
        )
    result = describe(moment)
    if operation == "format":
        fmt = _param(config, input, "format")
        if not isinstance(fmt, str):
            raise Failure.invalid_config(
                "format needs `format`, a strftime pattern such as %d %B %Y"
            )
        target = _param(config, input, "to")
        if target is not None:
            moment = moment.astimezone(zone(target, "to"))
            result = describe(moment)
        result["text"] = _normalise(moment).strftime(fmt)
    return result
