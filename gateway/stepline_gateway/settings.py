"""The gateway's settings: every flag of ``stepline gateway`` and its ``STEPLINE_*`` environment variable.

A pydantic-settings model: each field is read from ``STEPLINE_<FIELD>`` (empty values ignored, lists
comma-separated), flags (keyword arguments) override the environment, the environment overrides the
defaults. docs/operations.md lists them (generated from this model).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from stepline_store.sealing import Sealer, parse_keys


def comma_separated(value: Any) -> Any:
    """``a, b,,c`` -> ``["a", "b", "c"]``; lists pass through."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STEPLINE_", env_ignore_empty=True, frozen=True, extra="forbid"
    )

    database_url: str = Field(
        default="", repr=False, description="Postgres URL, e.g. postgresql://user:pw@host/db"
    )
    read_database_url: str | None = Field(
        default=None,
        repr=False,
        description="Postgres URL of a read replica for the dashboard and the /v1 list and detail routes "
        "(they then lag the primary by the replication delay); none: the primary",
    )
    session_database_url: str | None = Field(
        default=None,
        repr=False,
        description="direct (session) connection to the primary for LISTEN and migrations, when "
        "database_url goes through PgBouncer in transaction mode; none: database_url",
    )
    host: str = Field(default="0.0.0.0", description="address to listen on")  # noqa: S104
    port: int = Field(default=8288, description="port of the API and dashboard")
    dev: bool = Field(default=False, description="development mode: no event keys or signatures")
    event_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, repr=False, description="comma-separated keys accepted by POST /e/{key}"
    )
    signing_key: str | None = Field(default=None, repr=False, description="key that signs calls to services")
    signing_key_fallback: str | None = Field(
        default=None, repr=False, description="previous signing key, accepted during a rotation"
    )
    api_token: str | None = Field(
        default=None, repr=False, description="token the dashboard and the /v1 API require (not in dev mode)"
    )
    no_api_token: bool = Field(
        default=False,
        description="serve the dashboard and the /v1 API without a token: only behind your own auth",
    )
    concurrency: int = Field(default=128, description="calls in flight at once per gateway")
    endpoint_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="largest share of the call slots that calls to one endpoint (app URL) may hold",
    )
    lease_s: float = Field(default=30.0, description="seconds before a dead gateway's call is retried")
    max_lost_leases: int = Field(
        default=5, ge=1, description="times in a row a call's lease may lapse before its run fails"
    )
    call_timeout_s: float = Field(default=120.0, description="seconds a service may take to answer")
    retry_base_s: float = Field(default=10.0, description="backoff after a first failed attempt")
    retry_max_s: float = Field(default=3600.0, description="longest backoff between attempts")
    unreachable_patience_s: float = Field(
        default=0.0,
        description="seconds an app that refuses connections is waited for without spending attempts",
    )
    retry_after_max_s: float = Field(
        default=86400.0,
        gt=0,
        le=366 * 86400,
        description="longest retry-after honoured; later ones are cut to it",
    )
    max_body_bytes: int = Field(default=3 * 1024 * 1024, description="largest request body accepted")
    max_event_bytes: int = Field(default=512 * 1024, description="largest single event accepted")
    max_step_output_bytes: int = Field(
        default=4 * 1024 * 1024, description="largest output of a step or a run, as JSON"
    )
    max_run_state_bytes: int = Field(
        default=32 * 1024 * 1024, description="largest state of a run: the outputs of its steps, together"
    )
    max_answer_bytes: int = Field(default=8 * 1024 * 1024, description="largest answer read from a service")
    routes_refresh_s: float = Field(default=60.0, description="routing table reload period")
    shutdown_grace_s: float = Field(default=10.0, description="seconds to finish calls on shutdown")
    pool_size: int = Field(
        default=10,
        ge=2,
        description="Postgres connections per gateway, shared out between ingest and execution "
        "(ingest_pool_size)",
    )
    ingest_pool_size: int | None = Field(
        default=None,
        ge=1,
        description="of pool_size, the connections that take in events (POST /e, POST /v1/events, webhooks, "
        "cron ticks) in a pool of their own; the rest run the calls, the API and the background loops, so "
        "neither can starve the other; none: half of pool_size (at least 1)",
    )
    ingest_wait_s: float = Field(
        default=2.0,
        gt=0,
        description="seconds a POST of events waits for a connection of ingest's pool before it is answered "
        "503 with Retry-After (nothing stored: the sender sends again)",
    )
    retention_h: float = Field(default=168.0, description="hours of event and run history kept (at least 24)")

    secrets_key: str | None = Field(
        default=None,
        repr=False,
        description="comma-separated keys that open the secrets the operator seals (the first seals)",
    )
    unrecoverable_exit_s: float = Field(
        default=300.0,
        description="exit (so that Kubernetes restarts the pod) when a background task fails this long with "
        "errors other than database or network ones; 0: never",
    )
    no_group_commit: bool = Field(
        default=False,
        description="record each checkpoint post, each run's end and each small POST /e with a statement "
        "of its own, instead of those that arrive together in one statement and one commit "
        "(docs/performance.md)",
    )
    no_start_here: bool = Field(
        default=False,
        description="leave every new run to the claim (woken by NOTIFY) instead of leasing the runs of a "
        "POST /e to the replica that ingests it, up to its free call slots, and starting them after COMMIT",
    )
    group_commit_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=50,
        description="how long the first checkpoint post or run end arriving while no batch is in flight waits"
        " for others to join it (0: one turn of the event loop; timers round up to a millisecond)",
    )
    group_commit_in_flight: int = Field(
        default=2,
        ge=1,
        le=8,
        description="batches of checkpoint posts, of run ends and of small POST /e each written at once, "
        "each on a connection of its own: a batch's commit overlaps the next one's statement",
    )
    no_metrics: bool = Field(
        default=False,
        description="count nothing per call or run and answer GET /metrics with 404 (the queue is still "
        "served at GET /v1/queue)",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="log lines as plain text, or as JSON objects (one per line, with the run id, function "
        "and namespace of lines about a run)",
    )
    clock_offset_s: float = Field(
        default=0.0,
        description="testing aid: seconds added to the database's clock when this gateway judges due times "
        "(sleeps, retries, cron); leases ignore it; keep 0 in production",
    )

    _split_keys = field_validator("event_keys", mode="before")(comma_separated)

    @field_validator("secrets_key")
    @classmethod
    def _keys_parse(cls, value: str | None) -> str | None:
        if value:
            parse_keys(value)
        return value

    @field_validator("retention_h")
    @classmethod
    def _keeps_a_day(cls, value: float) -> float:
        if value < 24:
            raise ValueError("retention_h must be at least 24: duplicate event ids are refused for 24 hours")
        return value

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read the ``STEPLINE_*`` variables, then apply ``overrides`` that are not None (flags)."""
        return cls(**{name: value for name, value in overrides.items() if value is not None})

    def sealer(self) -> Sealer | None:
        """What opens (and, for manifest files, seals) the secrets of webhooks; None without a key."""
        return Sealer.from_setting(self.secrets_key) if self.secrets_key else None

    @property
    def ingest_connections(self) -> int:
        """The connections of ingest's pool: ``ingest_pool_size``, else half of ``pool_size`` (a POST of one
        event is a commit of its own, so ingest needs connections to overlap commits; execution batches its
        commits across runs); always leaving execution at least one."""
        wanted = self.ingest_pool_size if self.ingest_pool_size is not None else max(1, self.pool_size // 2)
        return min(wanted, self.pool_size - 1)

    @property
    def execution_connections(self) -> int:
        """The connections of the pool that runs the calls, the API and the background loops."""
        return self.pool_size - self.ingest_connections

    @property
    def session_url(self) -> str:
        """Where connections that hold session state go: LISTEN and the migration lock."""
        return self.session_database_url or self.database_url

    def signing_keys(self) -> list[str]:
        return [key for key in (self.signing_key, self.signing_key_fallback) if key]
