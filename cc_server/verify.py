"""`cc-admin verify DIR`: check every snapshot and log segment of a data directory, offline.

It reads the files only (no lock is taken, nothing is changed), with the same checks as
recovery: each snapshot's checksum, each log record's checksum, segments without gaps.
A torn tail of the newest segment (a half-written record, zeros or garbage after the last
whole record, with no whole record after it) is normal after a crash or a power loss
(recovery cuts it) and is reported, but is not damage. A file named like a snapshot or a
segment that is not a regular file (a FIFO, a link to a device) is reported as damage
and never read. `cc-admin` imports this module only when the command runs, so the client
package never imports the server at load time.

Exit status of `run`: 0 nothing damaged, 1 damage found, 2 not a data directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from . import snapshot as snap
from .wal import read_regular, scan_segment, segment_path, segments

CLEAN, DAMAGED, NOT_A_DATA_DIR = 0, 1, 2


@dataclass
class Finding:
    """The verdict on one file."""

    name: str
    ok: bool
    detail: str


def check_snapshot(path: Path) -> Finding:
    """A snapshot's header and checksum (format 1, without one, is decoded whole)."""
    try:
        data = read_regular(path)
        legacy = not data.startswith(snap.MAGIC)
        snap.decode_snapshot(data, path.name, unpack=legacy)
    except OSError as exc:
        return Finding(path.name, False, f"unreadable: {exc.strerror or exc}")
    except ValueError as exc:
        return Finding(path.name, False, str(exc))
    note = "format 1, no checksum: decoded whole" if legacy else "checksum ok"
    return Finding(path.name, True, f"{len(data)} bytes, {note}")


def check_segments(directory: Path) -> list[Finding]:
    """Every log segment: whole records, torn tail (last one only), damage, gaps."""
    found = []
    indexes = segments(directory)
    for n, index in enumerate(indexes):
        path = segment_path(directory, index)
        if n and index != indexes[n - 1] + 1:
            missing = segment_path(directory, indexes[n - 1] + 1).name
            found.append(Finding(missing, False, "missing: the log has a gap before "
                                 f"{path.name}"))
        try:
            scan = scan_segment(path)
        except OSError as exc:
            found.append(Finding(path.name, False, f"unreadable: {exc.strerror}"))
            continue
        records = f"{len(scan.records)} records"
        if scan.clean:
            found.append(Finding(path.name, True, records))
        elif scan.torn(last=n == len(indexes) - 1):
            found.append(Finding(path.name, True, f"{records}, then a torn tail of "
                                 f"{scan.size - scan.good} bytes at offset {scan.good} "
                                 f"({scan.tail}; never acknowledged: cut at the next "
                                 "start)"))
        else:
            found.append(Finding(path.name, False, f"damaged at offset {scan.good} "
                                 f"({scan.reason}) after {records}; {len(scan.later)} "
                                 "readable records after the damage"))
    return found


def verify(directory: Path) -> list[Finding]:
    """Findings for every snapshot and segment of a data directory."""
    found = [check_snapshot(snap.snapshot_path(directory, i)) for i in snap.snapshots(directory)]
    newest_good = [int(f.name[9:17]) for f in found if f.ok]
    found += check_segments(directory)
    present = segments(directory)
    if newest_good and present and max(present) >= newest_good[-1] and \
            newest_good[-1] not in present:
        found.append(Finding(segment_path(directory, newest_good[-1]).name, False,
                             "missing: the newest good snapshot's log segment"))
    if present and not newest_good:
        found.append(Finding("snapshot-*.msgpack", False, "no readable snapshot for the log"))
    return found


def run(directory: str, out: TextIO, *, json_lines: bool = False) -> int:
    """Print one line per file and a summary (`json_lines`: one JSON object per file,
    no summary); returns the exit status (see module)."""
    path = Path(directory)
    if not path.is_dir():
        out.write(f"{directory}: not a directory\n")
        return NOT_A_DATA_DIR
    if not snap.snapshots(path) and not segments(path):
        out.write(f"{directory}: no snapshot or log segment: not a data directory\n")
        return NOT_A_DATA_DIR
    findings = verify(path)
    if json_lines:
        out.writelines(json.dumps(asdict(f)) + "\n" for f in findings)
        return DAMAGED if any(not f.ok for f in findings) else CLEAN
    for f in findings:
        out.write(f"{'ok' if f.ok else 'DAMAGED':8} {f.name}: {f.detail}\n")
    bad = sum(not f.ok for f in findings)
    out.write(f"{len(findings)} files checked, {bad} damaged\n" if bad
              else f"{len(findings)} files checked, no damage\n")
    return DAMAGED if bad else CLEAN
