"""The software environment a result was made in: the pinned lock, and a record of versions.

``requirements.lock`` (written by ``make lock`` with ``uv pip compile``) pins every package,
transitive ones included. :func:`lock_differences` compares it with what is installed, and
:func:`record` is the stamp every results file and executed notebook carries, so a reader can
tell whether a rerun used the same versions and platform as the committed figures::

    python -m stn.util.environment check requirements.lock   # exit 1, listing differences
    python -m stn.util.environment record                    # the record, as JSON
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

#: The lock file of the repository this package is installed from (an editable install).
LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"
#: Installed alongside the lock but not in it: the installer, and this project itself.
NOT_LOCKED = frozenset({"pip", "stn"})
#: The packages whose versions decide the numbers; the record names them one by one.
KEY_PACKAGES = (
    "tensorflow-cpu",
    "keras",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "optuna",
    "matplotlib",
    "pillow",
)

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalize(name: str) -> str:
    """PEP 503 name normalization: ``Scikit_Learn`` and ``scikit-learn`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: str | Path = LOCK) -> dict[str, str]:
    """The pinned versions of a ``name==version`` lock file, by normalized name."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    """The installed distributions' versions, by normalized name: those of the environment's
    site-packages (not what a package vendors and puts on ``sys.path``, as Ray does)."""
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    return {normalize(d.metadata["Name"]): d.version for d in metadata.distributions(path=paths)}


def lock_differences(path: str | Path = LOCK) -> list[str]:
    """Every way the installed packages differ from the lock, one line each; empty if none."""
    pins, have = locked(path), installed()
    problems = []
    for name, version in sorted(pins.items()):
        if name not in have:
            problems.append(f"{name}=={version} is locked but not installed")
        elif have[name] != version:
            problems.append(f"{name}=={have[name]} is installed; the lock pins {version}")
    for name in sorted(set(have) - set(pins) - NOT_LOCKED):
        problems.append(f"{name}=={have[name]} is installed but not in the lock")
    return problems


#: The CPU extensions that decide which kernels TensorFlow, XLA and oneDNN run, and so the last
#: bits of float32 numbers: CPUs named alike (a cloud's "Intel(R) Xeon(R) Processor") differ here.
_KERNEL_FLAG = re.compile(r"avx\w*|amx\w*|fma|f16c")
#: Where Linux lists the CPU's caches, whose sizes set Eigen's matrix-product blocking.
_CACHES = Path("/sys/devices/system/cpu/cpu0/cache")


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and its flags, from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", set()
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.MULTILINE)
    return (model.group(1).strip() if model else ""), set(flags.group(1).split() if flags else ())


def cpu_model() -> str:
    """The CPU's model name and its widest vector extension."""
    model, flags = _cpuinfo()
    vector = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "")
    return " ".join(filter(None, (model, vector)))


def cpu_features() -> str:
    """The CPU's kernel-deciding extensions (:data:`_KERNEL_FLAG`), sorted."""
    return " ".join(sorted(f for f in _cpuinfo()[1] if _KERNEL_FLAG.fullmatch(f)))


def cpu_caches() -> str:
    """The sizes of the first CPU's caches, level by level ("" where Linux does not list them)."""
    sizes = sorted(_CACHES.glob("index*/size"))
    return " ".join(path.read_text().strip() for path in sizes)


def platform_record() -> dict[str, str]:
    """What the numbers depend on besides the packages: OS, CPU (its name, kernel-deciding
    extensions and cache sizes), Python, C library. Coarse where it can be (no kernel release,
    host name or core count), so one kind of machine gives one record, and two machines with
    equal records compute the same bits (XLA compiles for the CPU's extensions, and float32
    shows the difference)."""
    libc, libc_version = platform.libc_ver()
    return {
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "cpu_caches": cpu_caches(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "libc": f"{libc} {libc_version}".strip(),
    }


def lock_digest(lock: str | Path = LOCK) -> str | None:
    """The sha256 of the lock file (None when there is none), which names the lock a result
    was made with."""
    lock = Path(lock)
    return hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else None


def record(lock: str | Path = LOCK) -> dict[str, object]:
    """The environment stamp of a result: platform, key package versions, and the lock's digest
    with whether the installed packages match it exactly."""
    have = installed()
    digest = lock_digest(lock)
    return {
        "platform": platform_record(),
        "packages": {name: have.get(name) for name in KEY_PACKAGES},
        "lock_sha256": digest,
        "matches_lock": bool(digest) and not lock_differences(lock),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["check"] and len(args) <= 2:
        path = args[1] if len(args) == 2 else LOCK
        problems = lock_differences(path)
        for line in problems:
            print(f"environment differs from {path}: {line}", file=sys.stderr)
        if not problems:
            print(f"environment matches {path} ({len(locked(path))} pinned packages)")
        return 1 if problems else 0
    if args == ["record"]:
        print(json.dumps(record(), indent=2, sort_keys=True))
        return 0
    print("usage: python -m stn.util.environment check [LOCK] | record", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
