"""A throwaway PostgreSQL for the database tests: initdb in a temp dir, TLS
with a CA made here, SCRAM passwords, TLS required on TCP (as the RDS Proxy
requires it), fsync off; started with `pg_ctl` on a free port in about a
second, stopped and deleted at the end of the session.

The binaries come from the Debian `postgresql` package, which
`scripts/install-postgres` installs (scripts/test-handlers runs it): found
through PAYOPS_PG_BINDIR, else /usr/lib/postgresql/<newest>/bin, else PATH.
PostgreSQL refuses to run as root, so as root the server runs as the
`postgres` user the package creates.
"""

from __future__ import annotations

import datetime
import glob
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ADMIN = "payops_admin"
ADMIN_PASSWORD = "admin-test-password"
APP_PASSWORD = "app-test-password"


def bindir() -> Path:
    override = os.environ.get("PAYOPS_PG_BINDIR")
    candidates = [override] if override else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for c in candidates:
        if (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    raise RuntimeError(
        "no PostgreSQL server binaries (initdb, pg_ctl) found: run scripts/install-postgres "
        "(Debian's `postgresql` package) or set PAYOPS_PG_BINDIR"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "payops test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.crt", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


@dataclass
class Server:
    root: Path
    port: int
    ca_file: Path
    bindir: Path
    user: str | None  # the OS user the server runs as, when we are root

    host = "127.0.0.1"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True)

    def start(self) -> None:
        self._run(self.bindir / "pg_ctl", "-D", self.root / "data", "-l", self.root / "server.log", "-w", "-t", "60", "start")

    def stop(self) -> None:
        # Immediate: the data is thrown away anyway.
        self._run(self.bindir / "pg_ctl", "-D", self.root / "data", "-m", "immediate", "-w", "stop")

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text()
        except OSError:
            return ""


def start_server() -> Server:
    bins = bindir()
    user = None
    if os.geteuid() == 0:
        # initdb: "cannot be run as root"; the package creates `postgres`.
        user = "postgres"
        pwd.getpwnam(user)
    root = Path(tempfile.mkdtemp(prefix="payops-pg-"))
    ca_file, cert_file, key_file = make_tls(root)
    (root / "pwfile").write_text(ADMIN_PASSWORD + "\n")
    if user:
        entry = pwd.getpwnam(user)
        for p in [root, *root.iterdir()]:
            os.chown(p, entry.pw_uid, entry.pw_gid)
    server = Server(root=root, port=free_port(), ca_file=ca_file, bindir=bins, user=user)
    server._run(
        bins / "initdb", "-D", root / "data", "-U", ADMIN, "--pwfile", root / "pwfile",
        "--auth", "scram-sha-256", "--no-sync", "--no-locale", "-E", "UTF8",
    )
    with open(root / "data" / "postgresql.conf", "a") as conf:
        conf.write(
            f"""
listen_addresses = '127.0.0.1'
port = {server.port}
unix_socket_directories = '{root}'
ssl = on
ssl_cert_file = '{cert_file}'
ssl_key_file = '{key_file}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 30
"""
        )
    # TLS or nothing on TCP, SCRAM everywhere: what the proxy enforces.
    (root / "data" / "pg_hba.conf").write_text(
        "local all all scram-sha-256\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        "hostnossl all all 127.0.0.1/32 reject\n"
    )
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root / "data" / "pg_hba.conf", entry.pw_uid, entry.pw_gid)
    try:
        server.start()
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr}\n{server.log()}") from None
    return server


def remove(server: Server) -> None:
    try:
        server.stop()
    finally:
        shutil.rmtree(server.root, ignore_errors=True)
