"""A private PulseAudio server with null sinks, for testing the real PortAudio path without a
sound card (recipe: reference/real-audio-testing.md).

    srv = PulseServer(tmp_dir); srv.start()      # sets PULSE_SERVER etc. in os.environ
    rec = srv.record("agent_out.monitor", 24000)  # what the "speaker" plays
    srv.play("mic_feed", pcm16k, 16000)           # what the "user" says
    srv.kill(); srv.start()                       # a crashed and restarted sound server
    srv.stop()

Sinks (all mono s16le, `norewinds=1` so joining streams do not alter the monitor):

* `agent_out` at 24 kHz — the default sink; ALSA name `agent_speaker`;
* `mic_feed` at 16 kHz — its monitor is the default source; ALSA name `agent_mic`;
* `agent_out48` at 48 kHz — ALSA name `agent_out48`, for the forced-rate/resampling test.

A null sink idles with a 2 s render period, which stalls new streams; one stream of zeros is kept
on every sink for the life of the server ("keep-alive"), and each monitor is probed before use.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

SINKS = {"agent_out": 24000, "mic_feed": 16000, "agent_out48": 48000}
ALSA_NAMES = {
    "agent_speaker": "agent_out",
    "agent_monitor": "agent_out.monitor",
    "agent_mic": "mic_feed.monitor",
    "agent_out48": "agent_out48",
}
ENV_KEYS = ("XDG_RUNTIME_DIR", "PULSE_SERVER", "PULSE_COOKIE", "ALSA_CONFIG_PATH", "PULSE_SINK", "PULSE_SOURCE")


def missing_requirements() -> list[str]:
    """What this machine lacks for the real-audio tests (empty list: all there)."""
    missing = [tool for tool in ("pulseaudio", "pactl", "pacat", "parec") if shutil.which(tool) is None]
    if ctypes.util.find_library("portaudio") is None:
        missing.append("libportaudio2")
    if not Path("/usr/share/alsa/alsa.conf").exists():
        missing.append("alsa config (libasound2)")
    if not any(Path(d).glob("alsa-lib/libasound_module_pcm_pulse.so") for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")):
        missing.append("libasound2-plugins (ALSA pulse plugin)")
    return missing


class PulseServer:
    def __init__(self, root: Path | None = None) -> None:
        self.dir = Path(root or tempfile.mkdtemp(prefix="va-pulse-"))
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.env = {
            "XDG_RUNTIME_DIR": str(self.dir),
            "PULSE_SERVER": f"unix:{self.dir}/native",
            "PULSE_COOKIE": str(self.dir / "cookie"),
            "ALSA_CONFIG_PATH": str(self.dir / "asound.conf"),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._keepalive: list[subprocess.Popen[bytes]] = []
        self._children: list[subprocess.Popen[bytes]] = []
        self._saved_env: dict[str, str | None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _write_config(self) -> None:
        d = self.dir
        lines = [".fail", f"load-module module-native-protocol-unix auth-anonymous=1 socket={d}/native"]
        for name, rate in SINKS.items():
            lines.append(f"load-module module-null-sink sink_name={name} rate={rate} channels=1 format=s16le norewinds=1")
        lines += ["set-default-sink agent_out", "set-default-source mic_feed.monitor"]
        (d / "server.pa").write_text("\n".join(lines) + "\n")
        alsa = ["</usr/share/alsa/alsa.conf>"]
        alsa += [f"pcm.{alias} {{ type pulse device {dev} }}" for alias, dev in ALSA_NAMES.items()]
        (d / "asound.conf").write_text("\n".join(alsa) + "\n")

    def _run(self, *args: str, **kw) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(list(args), env=self.child_env(), capture_output=True, timeout=10, **kw)

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        return env

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) the server, keep-alives and probes; point this process at it."""
        self._write_config()
        if self._saved_env is None:
            self._saved_env = {k: os.environ.get(k) for k in ENV_KEYS}
        for k in ("PULSE_SINK", "PULSE_SOURCE"):
            os.environ.pop(k, None)
        os.environ.update(self.env)
        env = self.child_env()
        env["HOME"] = str(self.dir)
        self.proc = subprocess.Popen(
            [
                "pulseaudio", "--daemonize=no", "-n", "-F", str(self.dir / "server.pa"),
                "--exit-idle-time=-1", "--use-pid-file=no", "--realtime=no", "--high-priority=no",
                f"--log-target=file:{self.dir}/pulseaudio.log",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while self._run("pactl", "info").returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "pulseaudio.log").read_text(errors="replace")[-2000:] if (self.dir / "pulseaudio.log").exists() else ""
                raise RuntimeError(f"pulseaudio did not start (exit {self.proc.poll()}): {log}")
            time.sleep(0.05)
        for name, rate in SINKS.items():
            self._keepalive.append(
                subprocess.Popen(
                    ["pacat", "--playback", "-d", name, "--raw", "--format=s16le", f"--rate={rate}",
                     "--channels=1", "--latency-msec=20", "/dev/zero"],
                    env=self.child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )
        for name, rate in SINKS.items():  # each monitor must deliver before the test starts
            self._probe(f"{name}.monitor", rate, deadline=time.monotonic() + 15)

    def _probe(self, source: str, rate: int, deadline: float) -> None:
        """Read 64 bytes from `source` with parec, bounded in time (no shell pipeline: a
        pipeline's grandchildren keep pipes open and defeat subprocess timeouts)."""
        proc = subprocess.Popen(
            ["parec", "-d", source, "--raw", "--format=s16le", f"--rate={rate}", "--channels=1"],
            env=self.child_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        got = 0
        try:
            fd = proc.stdout.fileno()
            while got < 64:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise RuntimeError(f"monitor {source} did not deliver audio")
                chunk = os.read(fd, 64 - got)
                if not chunk:
                    raise RuntimeError(f"parec on {source} exited")
                got += len(chunk)
        finally:
            proc.kill()
            proc.wait(5)
            proc.stdout.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the server abruptly (SIGKILL: a crash) or politely (SIGTERM: a restart)."""
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
            self.proc = None
        self._reap(self._keepalive)

    def stop(self) -> None:
        self._reap(self._children)
        self._reap(self._keepalive)
        if self.proc is not None:
            terminate(self.proc, 5)
            self.proc = None
        if self._saved_env is not None:
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            self._saved_env = None

    @staticmethod
    def _reap(procs: list[subprocess.Popen[bytes]]) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
            if p.poll() is None:
                p.kill()
                p.wait(5)
        procs.clear()

    # -- audio in and out ------------------------------------------------------------------

    def record(self, source: str, rate: int) -> Recording:
        """Start recording `source` (e.g. 'agent_out.monitor'); call .stop() for the samples."""
        path = self.dir / f"rec-{source}-{time.monotonic_ns()}.raw"
        f = open(path, "wb")  # noqa: SIM115 - closed by Recording.stop
        proc = subprocess.Popen(
            ["parec", "-d", source, "--raw", "--format=s16le", f"--rate={rate}", "--channels=1", "--latency-msec=20"],
            env=self.child_env(), stdout=f, stderr=subprocess.DEVNULL,
        )
        self._children.append(proc)
        return Recording(proc, f, path)

    def play(self, sink: str, pcm: np.ndarray, rate: int) -> subprocess.Popen[bytes]:
        """Play int16 mono samples into `sink` in real time (bit-exact, unlike paplay)."""
        proc = subprocess.Popen(
            ["pacat", "--playback", "-d", sink, "--raw", "--format=s16le", f"--rate={rate}",
             "--channels=1", "--latency-msec=100"],
            env=self.child_env(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._children.append(proc)
        assert proc.stdin is not None
        proc.stdin.write(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
        proc.stdin.close()
        return proc


class Recording:
    def __init__(self, proc: subprocess.Popen[bytes], f, path: Path) -> None:
        self.proc, self.f, self.path = proc, f, path

    def stop(self) -> np.ndarray:
        self.proc.terminate()
        self.proc.wait(5)
        self.f.close()
        data = self.path.read_bytes()
        return np.frombuffer(data[: len(data) // 2 * 2], "<i2").copy()


def terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def locate(recording: np.ndarray, ref: np.ndarray) -> tuple[int, float]:
    """Where `ref` best matches inside `recording`, and the normalised correlation there."""
    x = recording.astype(np.float64)
    r = ref.astype(np.float64)
    if x.shape[0] < r.shape[0]:
        return -1, 0.0
    n = 1 << int(np.ceil(np.log2(x.shape[0] + r.shape[0])))
    xc = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(r, n)), n)[: x.shape[0] - r.shape[0] + 1]
    k = int(np.argmax(xc))
    seg = x[k : k + r.shape[0]]
    denom = np.linalg.norm(seg) * np.linalg.norm(r)
    return k, float(seg @ r / denom) if denom else 0.0
