"""The deployment units in deploy/, checked by what runs here: systemd-analyze verify on the
units; the command lines that the units make of their env files, and those of the
Containerfile and compose.yaml, parsed by the CLI's own parser; the broker's configuration
run by a real mosquitto. No container engine is needed: the Containerfile is read, not
built."""
import json
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from walloc_edge.cli import build_parser
from walloc_edge.firmware_bridge.transports import parse_url

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
STREAM_UNIT = DEPLOY / "systemd" / "walloc-edge-stream@.service"
SERVE_UNIT = DEPLOY / "systemd" / "walloc-edge-serve.service"
# systemd's specifiers for a system unit, instance cam1.
SPECIFIERS = {"i": "cam1", "S": "/var/lib", "C": "/var/cache", "%": "%"}


# ---- reading units and env files the way systemd does ----

def unit_settings(path):
    """{section: {key: [values]}} of a unit file."""
    settings, section = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = settings.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return settings


def specifiers(text):
    return re.sub(r"%(.)", lambda m: SPECIFIERS[m.group(1)], text)


def env_file_variants(path):
    """The env file's settings, then one variant per commented-out alternative
    ("#KEY=VALUE"), each with that one setting changed: all must give valid options."""
    base, alternatives = {}, []
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"(#?)([A-Z_]+)=(.*)", line.strip())
        if match:
            value = match.group(3).strip()
            if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if match.group(1):
                alternatives.append((match.group(2), value))
            else:
                base[match.group(2)] = value
    return [base] + [{**base, key: value} for key, value in alternatives]


def exec_start(path, env):
    """ExecStart's argument vector: ``${NAME}`` is one word, ``$NAME`` is split on
    whitespace (none when empty), specifiers resolved; as systemd runs it."""
    [line] = unit_settings(path)["Service"]["ExecStart"]
    argv = []
    for word in shlex.split(specifiers(line)):
        bare = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if bare:
            argv += env.get(bare.group(1), "").split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word))
    return argv


def unit_environment(path):
    env = {}
    for line in unit_settings(path)["Service"].get("Environment", []):
        for item in shlex.split(specifiers(line)):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def parse_cli(argv, capsys):
    """argv (walloc-edge COMMAND ...) parsed by the real CLI parser; a refusal fails with
    the CLI's own message."""
    assert Path(argv[0]).name == "walloc-edge", argv
    try:
        return build_parser(argv[1]).parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"walloc-edge refuses {shlex.join(argv[1:])}: {capsys.readouterr().err}")


# ---- (a) systemd-analyze verify ----

def verify(unit, tmp_path, edit=lambda text: text):
    """The complaints of systemd-analyze verify about ``unit`` (the template instantiated as
    cam1), its ExecStart pointed at a stub program; [] when it is clean."""
    analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    if not Path(analyze).is_file():
        pytest.skip("systemd-analyze is not installed (Debian's systemd package): the units "
                    "cannot be verified here")
    stub = tmp_path / "walloc-edge"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    name = unit.name.replace("@.", "@cam1.")
    text = edit(unit.read_text()).replace("/opt/walloc-edge/bin/walloc-edge", str(stub))
    (tmp_path / name).write_text(text)
    done = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / name)],
                          check=False, capture_output=True, text=True, timeout=60)
    # Unknown keys are only warnings (status 0): any line about this unit is a complaint.
    complaints = [line for line in (done.stdout + done.stderr).splitlines()
                  if name in line]
    return complaints + ([f"status {done.returncode}"] if done.returncode else [])


@pytest.mark.parametrize("unit", [STREAM_UNIT, SERVE_UNIT], ids=lambda p: p.name)
def test_units_verify(unit, tmp_path):
    assert verify(unit, tmp_path) == []


def test_verify_catches_a_misspelt_key(tmp_path):
    complaints = verify(STREAM_UNIT, tmp_path,
                        lambda text: text.replace("RestartSec=", "RestartSecs="))
    assert any("RestartSecs" in line for line in complaints), complaints


# ---- (d) the env files give valid options ----

@pytest.mark.parametrize("env", env_file_variants(DEPLOY / "systemd" / "cam1.env"),
                         ids=lambda env: env["SOURCE"] + " " + env["OPTIONS"])
def test_stream_unit_and_env_file(env, monkeypatch, capsys):
    service = unit_settings(STREAM_UNIT)["Service"]
    assert service["EnvironmentFile"] == ["/etc/walloc-edge/%i.env"]
    unit_env = unit_environment(STREAM_UNIT)
    # Each instance its own state folder (identity, boots, spool): the one systemd makes.
    assert unit_env["WALLOC_EDGE_STATE"] == "/var/lib/walloc-edge/cam1"
    assert service["StateDirectory"] == ["walloc-edge/%i"]
    monkeypatch.setenv("WALLOC_EDGE_STATE", unit_env["WALLOC_EDGE_STATE"])
    args = parse_cli(exec_start(STREAM_UNIT, env), capsys)
    assert args.command == "stream" and args.bundle == env["BUNDLE"]
    assert args.state == "/var/lib/walloc-edge/cam1"
    assert args.video is not None or args.watch is not None
    parse_url(args.to)
    assert "--state" not in env["OPTIONS"]
    assert service["KillSignal"] == ["SIGTERM"] and service["Restart"] == ["on-failure"]
    # Longer than the stream's wait for its last acknowledgements.
    assert float(service["TimeoutStopSec"][0]) > args.wait


@pytest.mark.parametrize("env", env_file_variants(DEPLOY / "systemd" / "serve.env"),
                         ids=lambda env: env["LISTEN"].split(":")[0] + " " + env["OPTIONS"])
def test_serve_unit_and_env_file(env, capsys):
    service = unit_settings(SERVE_UNIT)["Service"]
    args = parse_cli(exec_start(SERVE_UNIT, env), capsys)
    assert args.command == "serve" and args.model == env["MODEL"]
    assert args.out == "/var/lib/" + service["StateDirectory"][0]
    parse_url(args.listen)
    assert "--out" not in env["OPTIONS"]


# ---- (b) the Containerfile ----

def instructions(path):
    """[(INSTRUCTION, arguments)] of a Containerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip()]


def container_argv(steps):
    """The command the image runs: ENTRYPOINT then CMD, both in exec (JSON) form."""
    found = {name: json.loads(value) for name, value in steps if name in ("ENTRYPOINT", "CMD")}
    return found["ENTRYPOINT"], found["CMD"]


def pyproject():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11's tomllib reads "
                                                    "pyproject.toml")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_containerfile(capsys):
    steps = instructions(DEPLOY / "Containerfile")
    stages = [i for i, (name, _) in enumerate(steps) if name == "FROM"]
    assert all(steps[i][1].split()[0] == "python:3.11-slim" for i in stages)
    final = steps[stages[-1]:]
    runs = " ".join(value for name, value in steps if name == "RUN")
    # torch from the CPU index, the version the project pins.
    constraints = (ROOT / "constraints.txt").read_text()
    pin = re.search(r"^torch==(\S+)", constraints, re.MULTILINE).group(1)
    assert f"torch=={pin} --index-url https://download.pytorch.org/whl/cpu" in runs
    # The extras it installs exist.
    extras = {e for group in re.findall(r"\)\[([a-z,]+)\]", runs) for e in group.split(",")}
    assert extras == {"server", "bridge"}
    assert extras <= set(pyproject()["optional-dependencies"])
    # Each RUN is valid shell.
    for name, value in steps:
        if name == "RUN":
            checked = subprocess.run(["sh", "-n", "-c", value], capture_output=True, text=True,
                                     check=False, timeout=30)
            assert checked.returncode == 0, f"RUN {value}: {checked.stderr}"
    # What it copies from the build context (the repository root) is there, and is what
    # building the package reads.
    copied = {Path(source) for name, value in steps
              if name == "COPY" and not value.startswith("--from")
              for source in value.split()[:-1]}
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    needed = {"pyproject.toml", "setup.py", pyproject()["readme"], "models", "walloc_edge",
              *pyproject()["license-files"]}
    assert {Path(name) for name in needed} <= copied
    users = [value for name, value in final if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    entrypoint, cmd = container_argv(final)
    assert entrypoint[0] in pyproject()["scripts"]
    args = parse_cli(entrypoint + cmd, capsys)
    assert args.command == "serve" and args.listen == "tcp://0.0.0.0:9000"
    assert parse_url(args.listen).port == 9000
    volumes = [v for name, value in final if name == "VOLUME" for v in json.loads(value)]
    assert args.out in volumes
    assert ("STOPSIGNAL", "SIGTERM") in final


# ---- (c) compose.yaml ----

def test_compose(capsys):
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: compose.yaml cannot "
                                              "be parsed here")
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    for mount in services["mosquitto"]["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./") and not source.endswith("passwd"):  # passwd: the operator's
            assert (DEPLOY / source).is_file(), mount
    serve = services["serve"]
    context = (DEPLOY / serve["build"]["context"]).resolve()
    assert context == ROOT and (context / serve["build"]["dockerfile"]).is_file()
    entrypoint, _ = container_argv(instructions(context / serve["build"]["dockerfile"]))
    command = serve["command"]
    assert not any(re.search(r"(?<!\$)\$(?!\$)", word) for word in command), \
        "a lone $ in compose is a variable: write $$"
    args = parse_cli(entrypoint + [word.replace("$$", "$") for word in command], capsys)
    listen = parse_url(args.listen)
    assert listen.scheme == "mqtt" and listen.host == "mosquitto"
    secret = Path(listen.options["password_file"])
    assert secret.parent == Path("/run/secrets") and secret.name in serve["secrets"]
    assert (DEPLOY / compose["secrets"][secret.name]["file"]).parent.is_dir()
    assert any(volume.endswith(":" + args.out) for volume in serve["volumes"])
    assert "mosquitto" in serve["depends_on"]


# ---- the broker's configuration, run by a real mosquitto ----

def test_mosquitto_lets_the_server_and_sensors_through(mosquitto, tmp_path):
    mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed "
                                                          "(pip install 'walloc-edge[bridge]')")
    passwd_tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(passwd_tool).is_file():
        pytest.skip("mosquitto_passwd is not installed (Debian's mosquitto package)")
    passwd = tmp_path / "passwd"
    for user in ("walloc-serve", "sensor"):
        subprocess.run([passwd_tool, "-b", *(["-c"] if user == "walloc-serve" else []),
                        str(passwd), user, f"{user}-secret"], check=True, timeout=30)
    shutil.copy(DEPLOY / "mosquitto" / "acl", tmp_path / "acl")
    settings = "".join(
        line.replace("/mosquitto/config/", f"{tmp_path}/") + "\n"
        for line in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines()
        if line.split(" ")[0] not in ("listener", "persistence", "persistence_location"))
    broker = mosquitto(settings)

    def client(user, name, topic=None):
        """A connected paho client: (client, messages it got, whether its connection was
        refused, its subscriptions granted)."""
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        if user:
            c.username_pw_set(user, f"{user}-secret")
        got, refused, granted = [], [], []
        c.on_message = lambda c, u, message: got.append((message.topic, message.payload))
        c.on_connect = lambda c, u, flags, reason, p: refused.append(reason.is_failure)
        c.on_subscribe = lambda c, u, mid, reasons, p: granted.extend(
            not r.is_failure for r in reasons)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        if topic:
            c.subscribe(topic, qos=1)
        return c, got, refused, granted

    def wait(condition):
        deadline = time.monotonic() + 5
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
        return condition()

    ack = "walloc/frames/ack/00000000000000ab"
    server, to_server, _, server_granted = client("walloc-serve", "s", "walloc/frames")
    # Several servers share the frames through a shared subscription (docs/deploy.md).
    shared, to_shared, _, shared_granted = client("walloc-serve", "s2",
                                                  "$share/decoders/walloc/frames")
    sensor, to_sensor, _, sensor_granted = client("sensor", "c", ack)
    stranger, _, refused, _ = client(None, "x")
    try:
        assert wait(lambda: refused) and refused == [True], "anonymous clients are refused"
        assert wait(lambda: server_granted and shared_granted and sensor_granted)
        assert server_granted + shared_granted + sensor_granted == [True] * 3
        sensor.publish("walloc/frames", b"frames", qos=1)
        assert wait(lambda: to_server and to_shared), "the servers hear the sensors"
        server.publish(ack, b"ack", qos=1)
        assert wait(lambda: to_sensor), "the sensor hears its acknowledgements"
        assert to_server == to_shared == [("walloc/frames", b"frames")]
        assert to_sensor == [(ack, b"ack")]
    finally:
        for c in (server, shared, sensor, stranger):
            c.loop_stop()
            c.disconnect()
