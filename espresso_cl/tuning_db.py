"""The tuning database: tuned families of a profile per device, as JSON.

Two files hold entries: the user's (``$ESPRESSO_TUNING_DB``, default
``~/.cache/espresso_cl/tuning.json``, written by ``python -m espresso_cl tune``) and the one
shipped in the package (``espresso_cl/tuning_db.json``, the devices measured so far). An entry
is keyed by the device's identity (platform, device name, driver version: a new driver may
compile the kernels differently, so its entries are not reused) and by the profile it was
tuned from; it holds the families it replaces (``dataclasses.asdict`` of each), what was
measured and when. The user's entry wins over a shipped one.

A file that is unreadable, not JSON, or not this format gives one warning and is ignored:
tuning is an optimisation, never a reason to fail. Writes go to a temporary file renamed over
the database, so a reader never sees half a file. Pure Python: no pyopencl.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import warnings
from pathlib import Path

from . import settings

FORMAT = "espresso_cl tuning database"
VERSION = 1
SHIPPED = Path(__file__).with_name("tuning_db.json")
_DEVICE_FIELDS = ("platform", "name", "driver")


class TuningDatabaseError(ValueError):
    """A tuning database file that is not one (unreadable, not JSON, another format)."""


def device_key(identity) -> dict:
    """The device part of an entry's key, from ``DeviceTraits.identity``."""
    return dict(zip(_DEVICE_FIELDS, identity))


def _matches(entry: dict, identity, profile: str) -> bool:
    return entry["device"] == device_key(identity) and entry["profile"] == profile


def _check_entry(entry, where: str) -> None:
    if not (isinstance(entry, dict) and isinstance(entry.get("device"), dict)
            and sorted(entry["device"]) == sorted(_DEVICE_FIELDS)
            and all(isinstance(v, str) for v in entry["device"].values())
            and isinstance(entry.get("profile"), str) and isinstance(entry.get("overrides"), dict)):
        raise TuningDatabaseError(f"{where}: an entry needs device {{platform, name, driver}}, "
                                  f"profile and overrides; got {str(entry)[:200]}")


def read(path) -> list:
    """The entries of the database at ``path`` ([] when the file does not exist);
    TuningDatabaseError for a file that is not a tuning database."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise TuningDatabaseError(f"{path}: cannot read it ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TuningDatabaseError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TuningDatabaseError(f"{path}: not an espresso_cl tuning database (no \"format\": {FORMAT!r})")
    if data.get("version") != VERSION:
        raise TuningDatabaseError(f"{path}: version {data.get('version')!r}, this library reads {VERSION}")
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise TuningDatabaseError(f"{path}: \"entries\" is not a list")
    for entry in entries:
        _check_entry(entry, str(path))
    return entries


def _stamp(path: Path):
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _entries(path: Path) -> list:
    """The entries at ``path``, or [] with one warning per version of a bad file."""
    return _cached_entries(str(path), _stamp(path))


@functools.lru_cache(maxsize=16)
def _cached_entries(path: str, _stamp) -> list:
    try:
        return read(path)
    except TuningDatabaseError as exc:
        warnings.warn(f"tuning database ignored: {exc}", RuntimeWarning, stacklevel=4)
        return []


def overrides_for(identity, profile: str) -> dict | None:
    """The families tuned for this device identity and profile: the user's entry, else the
    shipped one, else None."""
    for path in (Path(settings.tuning_db_path()), SHIPPED):
        for entry in _entries(path):
            if _matches(entry, identity, profile):
                return entry["overrides"]
    return None


def store(path, entry: dict) -> None:
    """Put ``entry`` into the database at ``path`` (replacing the entry of the same device and
    profile), atomically. A file there that is not a tuning database is kept beside it as
    ``<name>.bad`` (one warning) and a new database is written."""
    _check_entry(entry, "new entry")
    path = Path(path)
    try:
        entries = read(path)
    except TuningDatabaseError as exc:
        bad = path.with_name(path.name + ".bad")
        warnings.warn(f"{exc}; kept as {bad}, writing a new database", RuntimeWarning, stacklevel=2)
        os.replace(path, bad)
        entries = []
    entries = [e for e in entries if not (e["device"] == entry["device"] and e["profile"] == entry["profile"])]
    entries.append(entry)
    write(path, entries)


def write(path, entries: list) -> None:
    """Write a database of ``entries`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": FORMAT, "version": VERSION, "entries": entries}, indent=1, sort_keys=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text + "\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
