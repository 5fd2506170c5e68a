"""PostgreSQL: one cluster under ``<home>/postgres/data``, run by ``pg_ctl``.

PostgreSQL refuses to run as root, so as root the cluster belongs to an unprivileged OS user
(``postgres`` when it exists, else a system user ``aob-postgres`` created here) and every
command runs through ``runuser``. Password auth is scram for the ``aob`` role.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from infra.settings import Settings
from infra.stack.errors import MissingPrerequisite, StackError
from infra.stack.process import log_file, pid_alive, pid_file, tcp_open
from infra.stack.progress import Progress
from infra.stack.tools import apt_install, can_apt

FALLBACK_USER = "aob-postgres"
# Checkpoints at most this far apart (start_options says why).
MAX_WAL_SIZE = "4GB"
CHECKPOINT_TIMEOUT = "15min"


def data_dir(settings: Settings) -> Path:
    return settings.home / "postgres" / "data"


def socket_dir(settings: Settings) -> Path:
    return settings.home / "postgres" / "sock"


def bin_dir() -> Path | None:
    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=version)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def ensure_installed(settings: Settings, progress: Progress) -> Path:
    found = bin_dir()
    if found is None and can_apt():
        apt_install(["postgresql"], progress)
        found = bin_dir()
    if found is None:
        raise MissingPrerequisite(
            "PostgreSQL server binaries (pg_ctl, initdb) not found: install PostgreSQL "
            "(Debian: apt-get install postgresql), then run again"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise MissingPrerequisite(
            "`runuser` not found (needed to run PostgreSQL as an unprivileged user when "
            "running as root): install util-linux, then run again"
        )
    return found


def os_user() -> str | None:
    """The user that runs the cluster; None means the current (non-root) user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        check=True,
        capture_output=True,
    )
    return FALLBACK_USER


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    return argv if user is None else ["runuser", "-u", user, "--", *argv]


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, check=False, start_new_session=True
        )
    except OSError as exc:
        raise StackError(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        msg = (done.stderr or done.stdout).strip().splitlines()
        raise StackError(f"{what} failed: {' | '.join(msg[-3:])}")


def _prepare(settings: Settings, user: str | None) -> None:
    pg = settings.home / "postgres"
    for d in (pg, socket_dir(settings), settings.home / "logs"):
        d.mkdir(parents=True, exist_ok=True)
    _chown(pg, user)
    _chown(socket_dir(settings), user)
    logf = log_file(settings, "postgres")
    logf.touch(exist_ok=True)
    _chown(logf, user)
    if user is not None:
        probe = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(pg)], check=False)
        if probe.returncode != 0:
            raise StackError(
                f"the PostgreSQL OS user `{user}` cannot reach {pg}: choose an AOB_HOME whose "
                "parent folders are world-searchable (e.g. chmod o+x on them)"
            )


def _initdb(settings: Settings, bins: Path, user: str | None) -> None:
    data = data_dir(settings)
    if (data / "PG_VERSION").exists():
        return
    pwfile = settings.home / "postgres" / ".pwfile"
    pwfile.write_text(settings.postgres_password + "\n")
    os.chmod(pwfile, 0o600)
    _chown(pwfile, user)
    try:
        _run(
            _as_user(
                user,
                [
                    str(bins / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    settings.postgres_user,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-instructions",
                ],
            ),
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)


def start_options(settings: Settings) -> str:
    # track_commit_timestamp lets `aob bench` read when each read-model row was committed
    # (its projection lag) from the rows themselves, at the cost of a few bytes per commit.
    #
    # Checkpoints: PostgreSQL's defaults (one per 1 GB of WAL, or every 5 minutes) suit a
    # database written a little at a time. The read side writes every event of every run,
    # and its index pages are written in no order (ids are uuids); after a checkpoint, each
    # page's first change puts the whole 8 KB page in the WAL. Under chain3 runs paced at
    # 216 a second, a run's rows wrote 53-65 KB of WAL right after a checkpoint, 26-33 KB in
    # the next 15 s, 19 KB in the 15 s after: with the defaults a checkpoint was forced about
    # every 40 s of that load (17 in 20 minutes of benches), and each began the costly pages
    # anew. At most one every 15 minutes or per 4 GB of WAL, as a write-heavy PostgreSQL is
    # set in production (docker-compose.yml sets the same).
    return (
        f"-c listen_addresses={settings.host} -p {settings.postgres_port} "
        f"-c unix_socket_directories={socket_dir(settings)} -c max_connections=200 "
        "-c fsync=on -c shared_buffers=128MB -c track_commit_timestamp=on "
        f"-c max_wal_size={MAX_WAL_SIZE} -c checkpoint_timeout={CHECKPOINT_TIMEOUT}"
    )


def postmaster_pid(settings: Settings) -> int | None:
    try:
        pid = int((data_dir(settings) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not pid_alive(pid):
        return None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    return pid if str(data_dir(settings)) in cmd else None


async def healthy(settings: Settings) -> bool:
    dsn = settings.postgres_dsn
    host, port = settings.host, settings.postgres_port
    if not settings.postgres_dsn_override and not await tcp_open(host, port):
        return False
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), 5)
    except Exception:  # noqa: BLE001 - any failure means "not healthy"
        return False
    try:
        return await conn.fetchval("select 1") == 1
    except Exception:  # noqa: BLE001
        return False
    finally:
        await conn.close()


async def _ensure_database(settings: Settings) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host=settings.host,
        port=settings.postgres_port,
        user=settings.postgres_user,
        password=settings.postgres_password,
        database="postgres",
    )
    try:
        exists = await conn.fetchval(
            "select 1 from pg_database where datname = $1", settings.postgres_db
        )
        if not exists:
            await conn.execute(f'create database "{settings.postgres_db}"')
    finally:
        await conn.close()


async def _server_up(settings: Settings) -> bool:
    import asyncpg

    try:
        conn = await asyncio.wait_for(
            asyncpg.connect(
                host=settings.host,
                port=settings.postgres_port,
                user=settings.postgres_user,
                password=settings.postgres_password,
                database="postgres",
            ),
            5,
        )
    except Exception:  # noqa: BLE001
        return False
    await conn.close()
    return True


async def ensure_running(settings: Settings, progress: Progress) -> tuple[int | None, bool]:
    if await healthy(settings):
        return postmaster_pid(settings), False
    bins = ensure_installed(settings, progress)
    user = os_user()
    started = False
    if postmaster_pid(settings) is None:
        # A lock file left by a killed server names a pid that may now belong to another
        # process of the same user, which PostgreSQL would take for a live postmaster.
        (data_dir(settings) / "postmaster.pid").unlink(missing_ok=True)
        _prepare(settings, user)
        if not (data_dir(settings) / "PG_VERSION").exists():
            with progress.step("initialising PostgreSQL cluster…"):
                _initdb(settings, bins, user)
        with progress.step("starting PostgreSQL…"):
            _run(
                _as_user(
                    user,
                    [
                        str(bins / "pg_ctl"),
                        "-D",
                        str(data_dir(settings)),
                        "-l",
                        str(log_file(settings, "postgres")),
                        "-o",
                        start_options(settings),
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ],
                ),
                f"starting PostgreSQL (see {log_file(settings, 'postgres')})",
            )
        started = True
    for _ in range(120):
        if await _server_up(settings):
            break
        await asyncio.sleep(0.25)
    else:
        logf = log_file(settings, "postgres")
        raise StackError(f"PostgreSQL did not accept connections; see {logf}")
    await _ensure_database(settings)
    pid = postmaster_pid(settings)
    if pid is not None:
        pid_file(settings, "postgres").parent.mkdir(parents=True, exist_ok=True)
        pid_file(settings, "postgres").write_text(f"{pid}\n")
    return pid, started


def stop(settings: Settings) -> bool:
    pid = postmaster_pid(settings)
    pid_file(settings, "postgres").unlink(missing_ok=True)
    if pid is None:
        return False
    bins = bin_dir()
    if bins is not None:
        subprocess.run(
            _as_user(
                os_user(),
                [
                    str(bins / "pg_ctl"),
                    "-D",
                    str(data_dir(settings)),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "60",
                    "stop",
                ],
            ),
            capture_output=True,
            check=False,
        )
    if pid_alive(pid):
        from infra.stack.process import terminate

        terminate(pid, 10)
    return True
