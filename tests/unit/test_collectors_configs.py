"""configs.py: server config files found the way each server finds them, parsed in their syntax.

The files under tests/data/configs are the ones Debian's packages install (see its README).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from portdoctor import services
from portdoctor.collectors import Request, configs
from portdoctor.model import Process
from portdoctor.host import LocalHost

CONF = Path(__file__).resolve().parents[1] / "data" / "configs"


def settings(svc: str, argv: tuple[str, ...], env: dict[str, str] | None = None) -> list[tuple]:
    info = services.by_name(svc)
    found, denied = configs.service_configs(info, Process(pid=1, name=argv[0], cmdline=argv), env=env,
                                            reader=configs.ConfigReader(LocalHost(), None))
    assert denied == []
    return [(Path(c.path).name if c.path != configs.COMMAND_LINE else c.path, c.line, c.key, c.value)
            for c in found]


# --------------------------------------------------------------------------- postgresql


def test_postgresql_conf_from_config_file_option() -> None:
    path = str(CONF / "postgresql" / "postgresql.conf")
    got = settings("postgresql", ("/usr/lib/postgresql/15/bin/postgres", "-D", "/nonexistent",
                                  "-c", f"config_file={path}"))
    # listen_addresses is commented out in the packaged file: absent, the check knows the default
    assert got == [("postgresql.conf", 64, "port", "5432")]


def test_postgresql_datadir_pgdata_and_include_dir(tmp_path: Path) -> None:
    shutil.copy(CONF / "postgresql" / "postgresql.conf", tmp_path)
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "listen.conf").write_text("# ours\nlisten_addresses = '*' # all\nport=5433\n")
    want = [("postgresql.conf", 64, "port", "5432"), ("listen.conf", 2, "listen_addresses", "*"),
            ("listen.conf", 3, "port", "5433")]
    assert settings("postgresql", ("postgres", "-D", str(tmp_path))) == want
    assert settings("postgresql", ("postgres",), env={"PGDATA": str(tmp_path)}) == want


def test_postgresql_quotes_and_command_line() -> None:
    text = "listen_addresses = 'localhost, 10.0.0.2'\t# comment 'x'\nport 6543\nunix_socket_directories='/run/it''s'\n"
    parsed = list(configs.parse_postgresql(text))
    assert [(s.key, s.value) for s in parsed] == [("listen_addresses", "localhost, 10.0.0.2"), ("port", "6543"),
                                                  ("unix_socket_directories", "/run/it's")]
    info = services.by_name("postgresql")
    cl = configs.cmdline_settings(info, Process(pid=1, name="postgres",
                                                cmdline=("postgres", "-p", "5433", "-c", "listen_addresses=*")))
    assert [(c.key, c.value, c.path) for c in cl] == [("port", "5433", configs.COMMAND_LINE),
                                                      ("listen_addresses", "*", configs.COMMAND_LINE)]


# --------------------------------------------------------------------------- redis


def test_redis_conf_from_argument() -> None:
    got = settings("redis", ("redis-server", str(CONF / "redis" / "redis.conf"), "--port", "6380"))
    assert got == [("redis.conf", 87, "bind", "127.0.0.1 -::1"), ("redis.conf", 111, "protected-mode", "yes"),
                   ("redis.conf", 138, "port", "6379"), (configs.COMMAND_LINE, 0, "port", "6380")]


def test_redis_text_of_the_line_is_kept() -> None:
    info = services.by_name("redis")
    found, _ = configs.service_configs(info, Process(pid=1, name="redis-server",
                                                     cmdline=("redis-server", str(CONF / "redis" / "redis.conf"))),
                                       reader=configs.ConfigReader(LocalHost(), None))
    assert found[0].text == "bind 127.0.0.1 -::1" and found[0].service == "redis"
    assert found[0].path == str(CONF / "redis" / "redis.conf")


# --------------------------------------------------------------------------- mysql / mariadb


def _mysql_tree(tmp_path: Path) -> Path:
    shutil.copytree(CONF / "mysql", tmp_path / "mysql")
    my = tmp_path / "mysql" / "my.cnf"
    my.write_text(my.read_text().replace("/etc/mysql/", f"{tmp_path}/mysql/"))
    return my


def test_mysql_defaults_file_follows_includedir(tmp_path: Path) -> None:
    my = _mysql_tree(tmp_path)
    got = settings("mysql", ("/usr/sbin/mariadbd", f"--defaults-file={my}"))
    assert got == [("50-server.cnf", 27, "bind-address", "127.0.0.1")]


def test_mysql_sections_and_skip_networking() -> None:
    text = "[client]\nport = 3307\n[mysqld]\nport=3308\nbind_address = ::\nskip-networking\n[mysqldump]\nport=1\n"
    got = [(s.key, s.value) for s in configs.parse_mysql(text)]
    assert got == [("port", "3308"), ("bind-address", "::"), ("skip-networking", "")]


# --------------------------------------------------------------------------- mongodb, yaml, others


def test_mongod_yaml() -> None:
    got = settings("mongodb", ("mongod", "--config", str(CONF / "mongodb" / "mongod.conf")))
    assert got == [("mongod.conf", 20, "net.port", "27017"), ("mongod.conf", 21, "net.bindIp", "127.0.0.1")]
    assert settings("mongodb", ("mongod", "-f", str(CONF / "mongodb" / "mongod.conf")))[1][3] == "127.0.0.1"


def test_yaml_keys_nested_dotted_and_quoted() -> None:
    text = ("cluster.name: x\nnetwork.host: \"0.0.0.0\"   # all\nhttp:\n  port: 9201\n"
            "net:\n  bindIp: 'localhost,10.0.0.2'\n  tls:\n    mode: disabled\nother: 1\n")
    got = {s.key: (s.line, s.value) for s in configs.parse_yaml_keys(text)}
    assert got["network.host"] == (2, "0.0.0.0") and got["http.port"] == (4, "9201")
    assert got["net.bindIp"] == (6, "localhost,10.0.0.2") and got["net.tls.mode"] == (8, "disabled")
    assert got["other"] == (9, "1")


def test_nginx_listen_lines_through_includes(tmp_path: Path) -> None:
    shutil.copytree(CONF / "nginx", tmp_path / "nginx")
    conf = tmp_path / "nginx" / "nginx.conf"
    conf.write_text(conf.read_text().replace("/etc/nginx/", f"{tmp_path}/nginx/"))
    got = settings("nginx", ("nginx:", "master", "process", "/usr/sbin/nginx", "-c", str(conf)))
    assert got == [("default", 22, "listen", "80 default_server"), ("default", 23, "listen", "[::]:80 default_server")]


def test_haproxy_default_has_no_bind() -> None:
    assert settings("haproxy", ("haproxy", "-f", str(CONF / "haproxy" / "haproxy.cfg"))) == []


def test_directive_and_xml_parsers() -> None:
    sshd = "Port 2222\n#ListenAddress ::\nListenAddress\t10.0.0.2\n"
    assert [(s.key, s.value) for s in configs.parse_directives(sshd)] == [
        ("Port", "2222"), ("ListenAddress", "10.0.0.2")]
    xml = ("<clickhouse>\n<!-- <listen_host>::</listen_host> -->\n<listen_host>0.0.0.0</listen_host>\n"
           "<!--\n<tcp_port>1</tcp_port>\n-->\n<tcp_port>9000</tcp_port>\n")
    assert [(s.line, s.key, s.value) for s in configs.parse_xml_tags(xml)] == [
        (3, "listen_host", "0.0.0.0"), (7, "tcp_port", "9000")]
    props = "listeners=PLAINTEXT://:9092\n# x=y\nclientPort: 2181\n"
    assert [(s.key, s.value) for s in configs.parse_properties(props)] == [
        ("listeners", "PLAINTEXT://:9092"), ("clientPort", "2181")]


def test_command_line_keys_are_the_config_keys() -> None:
    mongo = configs.cmdline_settings(services.by_name("mongodb"), Process(
        pid=1, name="mongod", cmdline=("mongod", "--bind_ip", "0.0.0.0", "--port=27018")))
    assert [(c.key, c.value, c.text) for c in mongo] == [("net.bindIp", "0.0.0.0", "--bind_ip 0.0.0.0"),
                                                         ("net.port", "27018", "--port=27018")]
    mc = configs.cmdline_settings(services.by_name("memcached"), Process(
        pid=1, name="memcached", cmdline=("memcached", "-m", "64", "-p", "11212", "-l", "127.0.0.1")))
    assert [(c.key, c.value) for c in mc] == [("-p", "11212"), ("-l", "127.0.0.1")]


def test_keys_spelled_as_services_py(tmp_path: Path) -> None:
    (tmp_path / "sshd_config").write_text("port 2222\nlistenaddress 10.0.0.2\n")
    got = settings("sshd", ("sshd", "-D", "-f", str(tmp_path / "sshd_config")))
    assert got == [("sshd_config", 1, "Port", "2222"), ("sshd_config", 2, "ListenAddress", "10.0.0.2")]


def test_file_limit_is_kept(tmp_path: Path) -> None:
    (tmp_path / "loop.conf").write_text(f"include {tmp_path}/loop.conf\nport 1\n")
    reader = configs.ConfigReader(LocalHost(), None)
    list(configs.read_settings(reader, str(tmp_path / "loop.conf"), "redis"))
    assert reader.files <= 5  # include depth is bounded


# --------------------------------------------------------------------------- the collector


def _fake_proc(root: Path, pid: int, argv: list[str], env: dict[str, str] | None = None) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "comm").write_text(Path(argv[0]).name[:15] + "\n")
    uid = (CONF / "redis" / "redis.conf").stat().st_uid  # the files' owner may read them for it
    (d / "status").write_text(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    (d / "stat").write_text(f"{pid} (x) S 1 {pid} {pid} 0 -1\n")
    (d / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in (env or {}).items()))


def test_collect_configs_on_a_proc_tree(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text("  sl  local_address rem_address   st\n")
    _fake_proc(tmp_path, 100, ["redis-server", str(CONF / "redis" / "redis.conf")])
    _fake_proc(tmp_path, 200, ["mongod", "--config", str(CONF / "mongodb" / "mongod.conf")])
    _fake_proc(tmp_path, 300, ["bash"])
    facts = configs.collect_configs(Request(port=6379, proc_root=str(tmp_path)))
    got = [(c.service, c.key, c.value) for c in facts.fields["configs"]]
    assert got == [("redis", "bind", "127.0.0.1 -::1"), ("redis", "protected-mode", "yes"), ("redis", "port", "6379"),
                   ("mongodb", "net.port", "27017"), ("mongodb", "net.bindIp", "127.0.0.1")]
    assert facts.limitations == []


def test_postgresql_auto_conf_is_read_last(tmp_path: Path) -> None:
    etc, data = tmp_path / "etc", tmp_path / "data"
    etc.mkdir()
    data.mkdir()
    conf = (CONF / "postgresql" / "postgresql.conf").read_text()
    # the Debian file names its data directory; point it at ours
    conf = conf.replace("data_directory = '/var/lib/postgresql/15/main'", f"data_directory = '{data}'")
    (etc / "postgresql.conf").write_text(conf)
    (data / "postgresql.auto.conf").write_text("# Do not edit this file manually!\nport = '5498'\n")
    got = settings("postgresql", ("postgres", "-c", f"config_file={etc / 'postgresql.conf'}"))
    assert got == [("postgresql.conf", 64, "port", "5432"), ("postgresql.auto.conf", 2, "port", "5498")]
    got = settings("postgresql", ("postgres", "-D", str(data), "-c", f"config_file={etc / 'postgresql.conf'}"))
    assert got[-1] == ("postgresql.auto.conf", 2, "port", "5498")


def test_expected_but_stopped_server_config_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing runs: the packaged file of the port's server is read (redis here, from our data)."""
    info = services.by_name("redis")
    fake = services.ServiceInfo(info.name, info.ports, info.process_names,
                                (services.ConfigSpec((str(CONF / "redis" / "redis.conf"),), "redis",
                                                     ("bind", "protected-mode"), ("port",)),))
    monkeypatch.setattr(services, "by_port", lambda port: [fake] if port == 6399 else [])
    monkeypatch.setattr("portdoctor.collectors.processes.processes_for", lambda req: ({}, []))
    facts = configs.collect_configs(Request(port=6399))
    assert [(c.service, c.line, c.key) for c in facts.fields["configs"]] == [
        ("redis", 87, "bind"), ("redis", 111, "protected-mode"), ("redis", 138, "port")]
    assert configs.expected_services(Request(port=1, service="postgres"))[0].name == "postgresql"
    assert configs.expected_services(Request(port=3000)) == []  # dev servers have no config file
