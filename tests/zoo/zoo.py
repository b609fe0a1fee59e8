#!/usr/bin/env python3
"""Driver of faultline's labelled scenario zoo (Python 3.11, stdlib only).

Real services in several frameworks, instrumented only by the stock
OpenTelemetry SDKs and auto-instrumentation and configured only by `OTEL_*`
variables, talk to a real PostgreSQL and a real Redis (Debian's packages,
started here on 127.0.0.1 with their own data directories) and to each other,
and fail in known ways. The labels (what the verdict must say) come from the
suites' code and this driver, never from running faultline.

  zoo.py setup   [SUITE ...|all] [--env-dir DIR]
  zoo.py run     SUITE --otlp-endpoint http://127.0.0.1:PORT [--protocol P] [--requests N]
  zoo.py capture [SUITE ...|all] [--out-dir tests/zoo/captures] [--requests N]
  zoo.py list

A suite is a module `suites/<name>.py` (see `suites/README.md`): its services,
how to install them, and its scenarios, each a function that fires requests
through a `Recorder` and labels every request it expects to end in a 500.
All scenarios of a suite run against one set of services started once.

`run` prints a JSON summary on its last line:
  {"suite", "framework", "requests", "labels": [...], "healthy_trace_ids": [...],
   "mismatches": [...], "elapsed_s"}
`capture` writes `<out-dir>/<suite>.json`: `{"spans": [...], "labels": [...],
"healthy_trace_ids": [...]}` (spans in the fixture format of
tests/scenarios/README.md).
"""

import argparse
import hashlib
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SUITES_DIR = HERE / "suites"
CAPTURE_RECEIVER = REPO / "tests" / "scenarios" / "capture_otlp.py"
DEFAULT_ENV = Path(os.environ.get("FAULTLINE_ZOO_ENV") or REPO / "target" / "zoo-env")
DEFAULT_OUT = HERE / "captures"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def log(msg):
    print(f"[zoo] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(*paths, extra=""):
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def wait_port(port, proc=None, timeout=20.0, what="service"):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it listened on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not listening on {port} after {timeout}s")
            time.sleep(0.05)


# ------------------------------------------------------------------- setup
def venv_setup(env_dir: Path, requirements: Path):
    """A venv with exactly the pinned requirements (`--no-deps`, then `pip check`)."""
    venv = env_dir / "venv"
    stamp = venv / ".faultline-requirements.sha256"
    want = digest(requirements, extra=f"{sys.version}|{sys.executable}")
    if stamp.exists() and stamp.read_text().strip() == want:
        return f"python venv up to date ({venv})"
    t0 = time.monotonic()
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "--no-deps", "-r", str(requirements)], check=True)
    subprocess.run(pip + ["check"], check=True)
    stamp.write_text(want + "\n")
    return f"created python venv {venv} in {time.monotonic() - t0:.1f}s"


def npm_setup(env_dir: Path, app_dir: Path):
    """`npm ci` of the suite's committed package-lock.json into DIR/node."""
    node_env = env_dir / "node"
    pkg, lock = app_dir / "package.json", app_dir / "package-lock.json"
    stamp = node_env / ".faultline-lock.sha256"
    want = digest(pkg, lock)
    if stamp.exists() and stamp.read_text().strip() == want and (node_env / "node_modules").is_dir():
        return f"node_modules up to date ({node_env})"
    t0 = time.monotonic()
    node_env.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pkg, node_env / "package.json")
    shutil.copy2(lock, node_env / "package-lock.json")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=node_env, check=True)
    stamp.write_text(want + "\n")
    return f"npm ci into {node_env} in {time.monotonic() - t0:.1f}s"


# ------------------------------------------------------------------ stores
class Stores:
    """A private PostgreSQL 15 and Redis 7 on 127.0.0.1, each with its own data
    directory under a temp dir; stopped by `stop()`. PostgreSQL refuses to run as
    root, so its directory is owned by `postgres` when we are root.

    URLs for the services: `pg_url` (postgres://postgres@127.0.0.1:PORT/zoo),
    `pg_host`, `pg_port`, `redis_url`, `redis_port`, and `dead_url` / `dead_port`
    (a loopback port nothing listens on: connection refused)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="faultline-zoo-stores-"))
        self.pg_dir = self.dir / "pg"
        self.pg_port = free_port()
        self.redis_port = free_port()
        self.dead_port = free_port()
        self.redis = None
        self.pg_started = False

    def _as_pg(self, cmd):
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + cmd
        return cmd

    def start(self):
        t0 = time.monotonic()
        if not (PG_BIN / "initdb").exists():
            raise SystemExit(f"{PG_BIN}/initdb missing: apt-get install -y postgresql")
        if not shutil.which("redis-server"):
            raise SystemExit("redis-server missing: apt-get install -y redis-server")
        self.pg_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.pg_dir, "postgres")
        subprocess.run(self._as_pg([str(PG_BIN / "initdb"), "-D", str(self.pg_dir), "-U", "postgres",
                                    "--auth=trust", "-E", "UTF8", "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(self._as_pg([str(PG_BIN / "pg_ctl"), "-D", str(self.pg_dir), "-l", str(self.pg_dir / "log"),
                                    "-o", f"-p {self.pg_port} -k {self.pg_dir} -c listen_addresses=127.0.0.1 "
                                          f"-c fsync=off -c max_connections=200", "-w", "start"]),
                       check=True, stdout=subprocess.DEVNULL)
        self.pg_started = True
        subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
                        "zoo"], check=True)
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                                       "--daemonize", "no"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.redis_port, self.redis, what="redis-server")
        log(f"stores up in {time.monotonic() - t0:.1f}s: postgres :{self.pg_port}, redis :{self.redis_port}")

    def urls(self):
        return {
            "pg_url": f"postgres://postgres@127.0.0.1:{self.pg_port}/zoo",
            "pg_host": "127.0.0.1",
            "pg_port": str(self.pg_port),
            "redis_url": f"redis://127.0.0.1:{self.redis_port}/0",
            "redis_port": str(self.redis_port),
            "dead_port": str(self.dead_port),
            "dead_url": f"http://127.0.0.1:{self.dead_port}",
        }

    def psql(self, sql):
        subprocess.run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
                        "-d", "zoo", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True)

    def redis_commands(self, commands):
        """Sends write commands (`[["HSET", key, field, value], ...]`) to the Redis in one
        pipeline over RESP (stdlib only) and reads one status or integer reply each; an
        error reply raises, naming the command."""
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=5) as s:
            out = b""
            for cmd in commands:
                out += f"*{len(cmd)}\r\n".encode()
                for arg in cmd:
                    b = str(arg).encode()
                    out += f"${len(b)}\r\n".encode() + b + b"\r\n"
            s.sendall(out)
            f = s.makefile("rb")
            for cmd in commands:
                line = f.readline()
                if line.startswith(b"-"):
                    raise RuntimeError(f"redis {cmd}: {line.decode().strip()}")

    def stop(self):
        if self.redis is not None and self.redis.poll() is None:
            os.killpg(self.redis.pid, signal.SIGTERM)
            try:
                self.redis.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.redis.pid, signal.SIGKILL)
                self.redis.wait()
        if self.pg_started:
            subprocess.run(self._as_pg([str(PG_BIN / "pg_ctl"), "-D", str(self.pg_dir), "-m", "immediate",
                                        "-w", "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- services
class Service:
    """One process of a suite. `cmd(env_dir)` returns (argv, cwd); `env` values are
    formatted with the cluster's URLs (`{<name>_url}` of every service, and the
    store URLs of `Stores.urls`)."""

    def __init__(self, name, cmd, service_name=None, version="1.0.0", environment="production",
                 region="us-east-1", env=None, legacy_env_key=False, node_env=None):
        self.name = name
        self.cmd = cmd
        self.service_name = service_name or name
        self.version = version
        self.environment = environment
        self.region = region
        self.extra_env = env or {}
        self.legacy_env_key = legacy_env_key
        self.node_env = node_env
        self.port = None
        self.proc = None
        self.logfile = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def environment_vars(self, otlp_endpoint, protocol, urls):
        env_key = "deployment.environment" if self.legacy_env_key else "deployment.environment.name"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update({
            "OTEL_SERVICE_NAME": self.service_name,
            "OTEL_RESOURCE_ATTRIBUTES": f"service.version={self.version},{env_key}={self.environment},"
                                        f"cloud.region={self.region}",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            # Only local resource detectors in Node: the default "all" includes cloud
            # detectors that probe the instance metadata address (not loopback).
            "OTEL_NODE_RESOURCE_DETECTORS": "env,host,os,process,serviceinstance",
            "PYTHONUNBUFFERED": "1",
            "APP_PORT": str(self.port),
        })
        env.update({k: str(v).format(**urls) for k, v in self.extra_env.items()})
        return env


class Cluster:
    def __init__(self, services, env_dir, otlp_endpoint, protocol, workdir, store_urls):
        self.services = {s.name: s for s in services}
        self.env_dir = env_dir
        self.otlp_endpoint = otlp_endpoint
        self.protocol = protocol
        self.workdir = Path(workdir)
        self.store_urls = store_urls

    def url(self, name):
        return self.services[name].url

    def start(self):
        for s in self.services.values():
            s.port = free_port()
        urls = dict(self.store_urls)
        urls.update({f"{s.name}_url": s.url for s in self.services.values()})
        for s in self.services.values():
            argv, cwd = s.cmd(self.env_dir)
            env = s.environment_vars(self.otlp_endpoint, self.protocol, urls)
            s.logfile = open(self.workdir / f"{s.name}.log", "wb")
            s.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=s.logfile,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        for s in self.services.values():
            try:
                wait_port(s.port, s.proc, timeout=40, what=f"service {s.name}")
            except RuntimeError as e:
                raise RuntimeError(f"{e}\n{self.tail(s)}") from None

    def tail(self, s, n=4000):
        try:
            return (self.workdir / f"{s.name}.log").read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, grace=8.0):
        """SIGTERM every process group (the SDKs flush on it), wait, then SIGKILL leftovers."""
        procs = [s for s in self.services.values() if s.proc is not None]
        for s in procs:
            if s.proc.poll() is None:
                try:
                    os.killpg(s.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for s in procs:
            try:
                s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{s.name} did not stop within {grace}s of SIGTERM: killing its process group")
            try:
                os.killpg(s.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            s.proc.wait()
            if s.logfile:
                s.logfile.close()


# ---------------------------------------------------------------- requests
class Recorder:
    """Fires requests and keeps, for each, the status, the trace id (the outermost
    service's `x-trace-id` response header) and the label of what faultline must say.

    `label` (for `expect=500`) is a dict:
      scenario        short name of the scenario (set by the driver)
      classification  deterministic_handler_defect | late_dependency_failure | inconclusive
      origin          {"service": str, "kind": "server"|"client"|"internal"|"producer",
                       "names": [acceptable span names]}  or None (inconclusive)
      bug             fingerprint group key: the same bug gives the same key; None when the
                      origin records no exception (the verdict's fingerprint must be null)
      cohort          {"release", "environment", "region", "tenant", "feature_flags": [...]}
                      (only the keys given are checked)
      blame           optional {"service", "names": [...]}: only where the scenario makes one
                      operation dominate the time budget by design
      why             one sentence: the bug, in the app's terms
    """

    def __init__(self):
        self.results = []
        self.lock = threading.Lock()
        self.scenario = None

    def call(self, base, method, path, expect=200, headers=None, body=None, label=None, timeout=15, raw=None):
        data = None
        hdrs = dict(headers or {})
        if raw is not None:
            data = raw.encode() if isinstance(raw, str) else raw
            hdrs.setdefault("content-type", "application/json")
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs["content-type"] = "application/json"
        req = urllib.request.Request(base + path, data=data, method=method, headers=hdrs)
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, tid = resp.status, resp.headers.get("x-trace-id")
                resp.read()
        except urllib.error.HTTPError as e:
            status, tid = e.code, e.headers.get("x-trace-id")
            e.read()
        rec = {"scenario": self.scenario, "method": method, "path": path, "status": status, "expect": expect,
               "trace_id": tid, "ms": round((time.monotonic() - t0) * 1000, 1), "label": None}
        if expect == 500:
            if label is None:
                raise ValueError(f"{self.scenario}: a request expected to fail needs a label")
            rec["label"] = dict(label, scenario=self.scenario)
        with self.lock:
            self.results.append(rec)
        return rec


# ------------------------------------------------------------------ suites
def suite_names():
    return sorted(p.stem for p in SUITES_DIR.glob("*.py") if not p.stem.startswith("_"))


def load_suite(name):
    sys.path.insert(0, str(HERE))
    try:
        return importlib.import_module(f"suites.{name}")
    finally:
        sys.path.pop(0)


def run_suite(name, env_dir: Path, otlp_endpoint, protocol="http/protobuf", n=2, keep_logs=None, only=None):
    suite = load_suite(name)
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"faultline-zoo-{name}-"))
    stores = Stores()
    rec = Recorder()
    ok = False
    cluster = None
    try:
        stores.start()
        if hasattr(suite, "prepare_stores"):
            suite.prepare_stores(stores)
        cluster = Cluster(suite.services(env_dir / name), env_dir / name, otlp_endpoint, protocol, workdir,
                          stores.urls())
        cluster.start()
        log(f"{name}: services up in {time.monotonic() - t0:.1f}s: "
            + ", ".join(f"{s.name}={s.port}" for s in cluster.services.values()))
        if hasattr(suite, "warm_up"):
            rec.scenario = "warm_up"
            suite.warm_up(cluster, rec)
        for scenario, fire in suite.SCENARIOS.items():
            if only and scenario not in only:
                continue
            rec.scenario = scenario
            fire(cluster, rec, n)
        time.sleep(getattr(suite, "SETTLE", 1.2))
        ok = True
    finally:
        if cluster is not None:
            cluster.stop()
            if not ok or keep_logs:
                for s in cluster.services.values():
                    log(f"--- log of {s.name} ---\n{cluster.tail(s)}")
        stores.stop()
        if keep_logs:
            Path(keep_logs).mkdir(parents=True, exist_ok=True)
            for f in workdir.glob("*.log"):
                shutil.copy2(f, Path(keep_logs) / f"{name}.{f.name}")
        shutil.rmtree(workdir, ignore_errors=True)
    results = rec.results
    labels = [dict(x["label"], trace_id=x["trace_id"], framework=suite.FRAMEWORK)
              for x in results if x["expect"] == 500]
    healthy = [x["trace_id"] for x in results if x["expect"] != 500 and x["status"] < 500 and x["trace_id"]]
    mismatches = [x for x in results if x["status"] != x["expect"] or not x["trace_id"]]
    summary = {
        "suite": name,
        "framework": suite.FRAMEWORK,
        "requests": len(results),
        "labels": labels,
        "healthy_trace_ids": healthy,
        "mismatches": mismatches,
        "elapsed_s": round(time.monotonic() - t0, 2),
    }
    return summary


def capture(names, env_dir: Path, out_dir: Path, n, protocol="http/protobuf"):
    out_dir.mkdir(parents=True, exist_ok=True)
    py = env_dir / "capture" / "venv" / "bin" / "python"
    failures = 0
    for name in names:
        tmp = Path(tempfile.mkdtemp(prefix="faultline-zoo-capture-"))
        port_file, out = tmp / "port", tmp / "spans.json"
        cmd = [str(py), str(CAPTURE_RECEIVER), "--port", "0", "--out", str(out)]
        if protocol == "grpc":
            cmd += ["--grpc-port", "0", "--grpc-port-file", str(port_file)]
        else:
            cmd += ["--port-file", str(port_file)]
        proc = subprocess.Popen(cmd, start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("capture receiver did not start")
                time.sleep(0.05)
            endpoint = f"http://127.0.0.1:{port_file.read_text().strip()}"
            summary = run_suite(name, env_dir, endpoint, protocol, n)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        spans = json.loads(out.read_text())["spans"] if out.exists() else []
        wanted = [x["trace_id"] for x in summary["labels"]] + summary["healthy_trace_ids"]
        missing = [t for t in wanted if t and not any(s["trace_id"] == t for s in spans)]
        dest = out_dir / f"{name}.json"
        doc = {"spans": spans, "labels": summary["labels"], "healthy_trace_ids": summary["healthy_trace_ids"]}
        dest.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        shutil.rmtree(tmp, ignore_errors=True)
        status = "OK" if not summary["mismatches"] and not missing else "MISMATCH"
        if status != "OK":
            failures += 1
            for m in summary["mismatches"]:
                log(f"mismatch: {m}")
        print(f"{name}: {status} {len(spans)} spans, {summary['requests']} requests, "
              f"{len(summary['labels'])} labelled 500s, {dest.stat().st_size // 1024} KiB, "
              f"{summary['elapsed_s']}s" + (f", traces missing: {missing}" if missing else ""))
    return failures


def setup(names, env_dir: Path):
    # The capture receiver's own venv (opentelemetry-proto, protobuf, grpcio).
    print(venv_setup(env_dir / "capture", HERE / "capture-requirements.txt"))
    for name in names:
        suite = load_suite(name)
        for line in suite.setup(env_dir / name, venv_setup=venv_setup, npm_setup=npm_setup):
            print(line)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_setup = sub.add_parser("setup", help="install every suite's packages (idempotent)")
    p_setup.add_argument("suites", nargs="*", default=["all"])
    p_run = sub.add_parser("run", help="run one suite against an OTLP endpoint")
    p_run.add_argument("suite")
    p_run.add_argument("--otlp-endpoint", required=True)
    p_run.add_argument("--protocol", default="http/protobuf", choices=["http/protobuf", "grpc"])
    p_run.add_argument("--requests", type=int, default=2, help="repetitions of each failing request")
    p_run.add_argument("--only", nargs="*", help="run only these scenarios")
    p_run.add_argument("--keep-logs")
    p_cap = sub.add_parser("capture", help="run suites against the capture receiver and write captures")
    p_cap.add_argument("suites", nargs="*", default=["all"])
    p_cap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p_cap.add_argument("--requests", type=int, default=3)
    sub.add_parser("list", help="list the suites and their scenarios")
    for p in (p_setup, p_run, p_cap):
        p.add_argument("--env-dir", type=Path, default=DEFAULT_ENV,
                       help=f"where packages are installed (default $FAULTLINE_ZOO_ENV or {DEFAULT_ENV})")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for name in suite_names():
            print(name + ": " + " ".join(load_suite(name).SCENARIOS))
        return 0
    env_dir = args.env_dir.resolve()

    def pick(given):
        names = suite_names() if given in (["all"], []) else given
        unknown = [x for x in names if x not in suite_names()]
        if unknown:
            ap.error(f"unknown suite(s) {unknown}; one of {suite_names()}")
        return names

    if args.cmd == "setup":
        setup(pick(args.suites), env_dir)
        return 0
    if args.cmd == "run":
        summary = run_suite(pick([args.suite])[0], env_dir, args.otlp_endpoint, args.protocol,
                            max(1, args.requests), args.keep_logs, args.only)
        print(json.dumps(summary))
        return 1 if summary["mismatches"] else 0
    if args.cmd == "capture":
        return 1 if capture(pick(args.suites), env_dir, args.out_dir.resolve(), max(1, args.requests)) else 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
