"""`voices.json` in the state dir: which voice id belongs to (family, target model, name, digest).

Why a cache at all: listing every voice on each boot is slow and needs the network; with a cached
id the daemon can start offline and verify later. Why it must be crash-safe: a device loses power
at any moment, and a half-written file must never cost us the id of a voice we paid to create.
So writes are atomic (temp file in the same directory, fsync, rename, fsync the directory), and a
file we cannot read (bad JSON, another program's file, a version we do not know) is moved aside as
`voices.json.corrupt-<timestamp>` with a warning instead of stopping the daemon.

An entry is written *before* `create` as an intent (`state: pending`, with the name/prefix sent and
the time). If the process dies between the service creating the voice and us recording its id,
the next start sees the intent and finds the voice by listing rather than creating a second one.

Concurrent processes (the daemon and `voice-agent voices ensure`) serialise on an flock on
`voices.json.lock`, held for the whole ensure, so two of them cannot both create the voice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.statefile import atomic_write

SCHEMA = "voice-agent/voices"
VERSION = 1
FILENAME = "voices.json"

PENDING, DEPLOYING, READY = "pending", "deploying", "ready"
_STATES = (PENDING, DEPLOYING, READY)


class CacheLocked(TimeoutError):
    """Another process held the cache lock for longer than we were willing to wait."""


@dataclass(frozen=True)
class CacheKey:
    family: str
    target_model: str
    name: str
    digest: str  # "sha256:<hex>" of the sample bytes / sample_url / design prompt; "" = none given


@dataclass
class CacheEntry:
    family: str
    target_model: str
    name: str
    digest: str
    state: str  # pending (create sent, id unknown) | deploying | ready
    voice_id: str | None = None
    request_name: str = ""  # prefix (cosyvoice) / preferred_name (qwen) sent with create
    source: str = ""  # sample | sample_url | design_prompt | existing
    started_at: float = 0.0  # when the create was (about to be) sent
    updated_at: float = 0.0
    preview: str | None = None  # designed voices: path of the saved preview audio
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> CacheKey:
        return CacheKey(self.family, self.target_model, self.name, self.digest)

    @classmethod
    def from_json(cls, raw: Any) -> CacheEntry:
        if not isinstance(raw, dict):
            raise ValueError("entry is not an object")
        known = {f for f in cls.__dataclass_fields__}
        data = {k: v for k, v in raw.items() if k in known}
        entry = cls(**data)
        for attr in ("family", "target_model", "name", "digest", "state"):
            if not isinstance(getattr(entry, attr), str):
                raise ValueError(f"entry field {attr!r} is not a string")
        if entry.state not in _STATES:
            raise ValueError(f"unknown entry state {entry.state!r}")
        if entry.state != PENDING and not isinstance(entry.voice_id, str):
            raise ValueError("entry without a voice id")
        return entry


class VoiceCache:
    """Load/modify/save `voices.json`. Not thread-safe; one instance per operation."""

    def __init__(self, state_dir: Path, *, log: logging.Logger | None = None) -> None:
        self.path = Path(state_dir) / FILENAME
        self.lock_path = Path(state_dir) / (FILENAME + ".lock")
        self.log = log or logging.getLogger("voice-agent.voices")
        self.entries: list[CacheEntry] = []
        self.loaded = False

    # --- reading ----------------------------------------------------------------------------

    def load(self) -> list[CacheEntry]:
        """Read the file; an unreadable or foreign one is moved aside (warning), never fatal."""
        self.loaded = True
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            self.entries = []
            return self.entries
        except OSError as e:
            self.log.warning("cannot read %s (%s); starting with an empty voice cache", self.path, e)
            self.entries = []
            return self.entries
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
                raise ValueError(f"not a {SCHEMA} file")
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')!r}, this program reads {VERSION}")
            raw_entries = doc.get("entries")
            if not isinstance(raw_entries, list):
                raise ValueError("'entries' is not a list")
            self.entries = [CacheEntry.from_json(e) for e in raw_entries]
        except (ValueError, TypeError) as e:
            self._set_aside(str(e))
            self.entries = []
        return self.entries

    def _set_aside(self, why: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{FILENAME}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{FILENAME}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, target)
        except OSError as e:
            self.log.warning("voice cache %s is unreadable (%s) and cannot be moved aside (%s); "
                             "it will be overwritten", self.path, why, e)
            return
        self.log.warning(
            "voice cache %s is unreadable (%s); moved it aside to %s and starting afresh "
            "(existing voices are found again by listing)", self.path, why, target.name,
        )

    # --- queries ----------------------------------------------------------------------------

    def get(self, key: CacheKey) -> CacheEntry | None:
        for e in self.entries:
            if e.key == key:
                return e
        return None

    def ids_claimed_elsewhere(self, key: CacheKey) -> set[str]:
        """Voice ids this cache attributes to *other* samples of the same name and model.

        Listing cannot tell which sample a voice was made from; these ids tell us which matching
        voices belong to an older sample, so a changed sample gets a new voice instead.
        """
        return {e.voice_id for e in self.others_for_name(key) if e.voice_id}

    def others_for_name(self, key: CacheKey) -> list[CacheEntry]:
        return [
            e for e in self.entries
            if e.voice_id
            and (e.family, e.target_model, e.name) == (key.family, key.target_model, key.name)
            and e.digest != key.digest
        ]

    # --- changes ----------------------------------------------------------------------------

    def put(self, entry: CacheEntry) -> None:
        entry.updated_at = time.time()
        self.entries = [e for e in self.entries if e.key != entry.key]
        self.entries.append(entry)
        self.save()

    def remove(self, key: CacheKey) -> None:
        before = len(self.entries)
        self.entries = [e for e in self.entries if e.key != key]
        if len(self.entries) != before:
            self.save()

    def forget_voice(self, voice_id: str) -> bool:
        before = len(self.entries)
        self.entries = [e for e in self.entries if e.voice_id != voice_id]
        if len(self.entries) != before:
            self.save()
            return True
        return False

    def save(self) -> None:
        doc = {"schema": SCHEMA, "version": VERSION, "entries": [asdict(e) for e in self.entries]}
        atomic_write(self.path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())

    def _remove_stale_temp_files(self) -> None:
        """Temp files of writers killed mid-write; only lock holders write, so none is live."""
        for tmp in self.path.parent.glob(f".{FILENAME}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()

    # --- locking ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def locked(self, timeout_s: float = 600.0) -> AsyncIterator[VoiceCache]:
        """Hold the cross-process lock (polling, so the event loop keeps running) and load."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + timeout_s
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waited:
                        self.log.info("waiting for another voice-agent process to finish with %s", self.path)
                        waited = True
                    if time.monotonic() > deadline:
                        raise CacheLocked(f"{self.lock_path} stayed locked for {timeout_s:g} s") from None
                    await asyncio.sleep(0.1)
            self._remove_stale_temp_files()
            self.load()
            yield self
        finally:
            os.close(fd)  # releases the flock
