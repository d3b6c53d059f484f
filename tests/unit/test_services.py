"""services.py: the well-known service table and its lookups."""

from __future__ import annotations

import pytest

from portdoctor import services
from portdoctor.model import Process
from portdoctor.services import ConfigSpec, ServiceInfo


def test_table_has_the_common_servers() -> None:
    names = {s.name for s in services.SERVICES}
    assert {"postgresql", "mysql", "redis", "mongodb", "elasticsearch", "rabbitmq", "memcached", "nginx",
            "apache", "haproxy", "sshd", "kafka", "zookeeper", "etcd", "clickhouse", "gunicorn", "uvicorn",
            "node", "python"} <= names
    for s in services.SERVICES:
        assert isinstance(s, ServiceInfo) and s.ports and all(isinstance(p, int) for p in s.ports)
        for c in s.configs:
            assert isinstance(c, ConfigSpec) and c.paths and c.syntax and (c.bind_keys or c.port_keys)


@pytest.mark.parametrize("port, name", [
    (5432, "postgresql"), (3306, "mysql"), (6379, "redis"), (27017, "mongodb"), (9200, "elasticsearch"),
    (5672, "rabbitmq"), (11211, "memcached"), (22, "sshd"), (9092, "kafka"), (2181, "zookeeper"),
    (2379, "etcd"), (8123, "clickhouse"), (80, "nginx"), (3000, "node"), (8000, "gunicorn"), (8080, "http"),
])
def test_by_port(port: int, name: str) -> None:
    assert name in [s.name for s in services.by_port(port)]


def test_by_port_unknown() -> None:
    assert services.by_port(1) == []


@pytest.mark.parametrize("text, name", [
    ("/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main -c config_file=/etc/x.conf",
     "postgresql"),
    ("postgres: 15/main: checkpointer", "postgresql"),
    ("redis-server 127.0.0.1:6379", "redis"),
    ("/usr/sbin/mariadbd", "mysql"),
    ("/usr/sbin/mysqld --defaults-file=/etc/my.cnf", "mysql"),
    ("mongod --config /etc/mongod.conf", "mongodb"),
    ("nginx: master process /usr/sbin/nginx -g daemon on; master_process on;", "nginx"),
    ("/usr/sbin/apache2 -k start", "apache"),
    ("/usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg", "haproxy"),
    ("sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", "sshd"),
    ("/usr/bin/memcached -m 64 -p 11211 -u memcache -l 127.0.0.1", "memcached"),
    ("/usr/bin/python3 /usr/bin/gunicorn -b 0.0.0.0:8000 app:app", "gunicorn"),
    ("python3 -m uvicorn main:app --port 8000", "uvicorn"),
    ("python3.11 manage.py runserver", "python"),
    ("/usr/bin/python3 -m pytest -q tests -k postgres", "python"),  # a generic runtime, not postgres
    ("/usr/bin/python3 -X dev -m gunicorn app:app", "gunicorn"),
    ("python3 -c import x redis-server", "python"),
    ("node --require ts-node/register server.ts", "node"),
    ("node server.js", "node"),
    ("/usr/bin/java -Xmx1G -cp /opt/kafka/libs/* kafka.Kafka /opt/kafka/config/server.properties", "kafka"),
    ("java -cp zookeeper.jar org.apache.zookeeper.server.quorum.QuorumPeerMain zoo.cfg", "zookeeper"),
    ("/usr/share/elasticsearch/jdk/bin/java -Xms1g org.elasticsearch.bootstrap.Elasticsearch", "elasticsearch"),
    ("/usr/lib/erlang/erts-13/bin/beam.smp -- -root /usr/lib/erlang -progname erl -- -s rabbit boot",
     "rabbitmq"),
    ("/usr/bin/etcd --listen-client-urls http://0.0.0.0:2379", "etcd"),
    ("/usr/bin/clickhouse-server --config-file=/etc/clickhouse-server/config.xml", "clickhouse"),
])
def test_by_process(text: str, name: str) -> None:
    found = services.by_process(text)
    assert found is not None and found.name == name


@pytest.mark.parametrize("text", ["bash", "sleep 100", "", "/usr/bin/java -jar app.jar", "vim redis.conf",
                                  "vim /usr/bin/redis-server", "beam.smp -- -root /usr/lib/erlang -s couch",
                                  "java -cp app.jar com.example.Main --redis redis:6379"])
def test_by_process_unknown(text: str) -> None:
    assert services.by_process(text) is None


def test_service_for_process_uses_cmdline_then_name() -> None:
    p = Process(pid=1, name="postgres", cmdline=("postgres: 15/main: walwriter",))
    assert services.service_for_process(p).name == "postgresql"
    assert services.service_for_process(Process(pid=2, name="redis-server")).name == "redis"
    assert services.service_for_process(Process(pid=3, name="bash", cmdline=("bash",))) is None


def test_by_name_aliases_and_generic() -> None:
    assert services.by_name("postgres").name == "postgresql"
    assert services.by_name("MariaDB").name == "mysql"
    assert services.by_name("mysqld").name == "mysql"
    assert services.by_name("nope") is None
    assert services.is_generic(services.by_name("node")) and not services.is_generic(services.by_name("redis"))


def test_config_hints_name_the_keys() -> None:
    pg = services.by_name("postgresql")
    assert "listen_addresses" in pg.bind_key_hint and pg.configs[0].bind_keys == ("listen_addresses",)
    redis = services.by_name("redis")
    assert redis.configs[0].syntax == "redis" and "protected-mode" in redis.configs[0].bind_keys
    assert services.by_name("mongodb").configs[0].port_keys == ("net.port",)
