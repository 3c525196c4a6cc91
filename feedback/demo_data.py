"""Seeded, deterministic demo data for one realistic organization.

Pure Python (no Django). Yields API-shaped dicts (the items of ``POST /api/v1/traces``,
``/feedback`` and ``/outcomes``, see shared/API.md) as a stream, so the same code feeds
``make demo`` (10k-50k traces), benchmarks (100k+) and scale tests (10M) without ever
holding the whole data set in memory.

The story the data tells (so the product has something to find):

* four features with different value per success; prompt versions change over time;
* ~40 customers of very different sizes (Zipf-like), each with plan, region and a
  share of SSO users (~20% of traffic overall);
* THE HIDDEN REGRESSION: support-copilot moves from ``support-v2.2`` to ``support-v2.3``
  halfway through the whole days, at a midnight UTC. v2.3 ("be concise") is slightly
  better for password users but, for ``metadata.auth == "sso"`` users, gives short,
  wrong answers (it tells them to reset a password they do not have): many more
  thumbs-down and edits, fewer tickets resolved. Overall v2.2 vs v2.3 barely moves, because SSO is only ~20% of traffic;
* an experiment on checkout-assist: ``control`` (AI, checkout-v3.0), ``ai_on`` (AI,
  checkout-v3.1) and a 10% ``holdback`` (no AI, ``fallback=True``); purchases are
  ~8% higher (relative) in ``ai_on`` than in ``holdback``;
* every trace has a latent probability of being good; feedback is sparse and biased
  (unhappy users answer more), implicit signals and outcomes correlate with quality.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import math
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from feedback.schemas import prompt_hash_of

__all__ = [
    "DemoConfig",
    "demo_batches",
    "demo_customers",
    "demo_features",
    "demo_prices",
    "demo_prompt_versions",
    "demo_stream",
]

_M64 = (1 << 64) - 1


@dataclass(frozen=True)
class DemoConfig:
    """What to generate. Same config (with an explicit ``end``) -> same stream.

    The stream covers ``days`` whole UTC days before ``end``'s own day, plus that day up to ``end``.
    The whole days get ``traces`` traces between them and the prompt versions' switches (the
    regression's start among them) fall on their midnights, all laid from the end day's 00:00 UTC: so
    every whole day holds the same traces, feedback and outcomes whatever the hour of ``end``
    (reports, alerts and drift read whole days), and only today's share, at the same rate, grows with it.
    """

    traces: int = 20000  # over the whole days; the end's own day adds its share up to ``end``
    days: int = 30
    seed: int = 7
    end: datetime | None = None  # default: now (UTC) truncated to the hour
    spans: bool = True  # child spans on traces; off saves ~35% of time and bytes
    include_truth: bool = False  # add "_truth": {"p_good", "good"} (not API fields)

    def resolved_end(self) -> datetime:
        end = self.end or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)  # naive datetimes are taken as UTC
        return end.astimezone(UTC)


# --------------------------------------------------------------------------- catalog

_FEATURES: list[dict[str, Any]] = [
    {
        "key": "support-copilot",
        "name": "Support Copilot",
        "description": "Drafts answers to customer support tickets from the help center.",
        "value_per_success_usd": 4.00,
    },
    {
        "key": "summarize",
        "name": "Summarize",
        "description": "One-click summaries of long documents, threads and meeting notes.",
        "value_per_success_usd": 0.30,
    },
    {
        "key": "checkout-assist",
        "name": "Checkout Assist",
        "description": "Answers shopper questions and suggests add-ons at checkout.",
        "value_per_success_usd": 12.00,
    },
    {
        "key": "search-answers",
        "name": "Search Answers",
        "description": "Generated answer above the search results, with sources.",
        "value_per_success_usd": 0.50,
    },
]
_FEATURE_SHARE = (0.40, 0.25, 0.20, 0.15)  # traffic share, same order as _FEATURES

# (provider, model): (input $/Mtok, output $/Mtok, cached input $/Mtok, ttft ms, ms/token)
_MODELS: dict[str, tuple[str, float, float, float, float, float]] = {
    "gpt-4o-mini": ("openai", 0.15, 0.60, 0.075, 350.0, 9.0),
    "gpt-4o": ("openai", 2.50, 10.00, 1.25, 450.0, 14.0),
    "claude-3-5-haiku": ("anthropic", 0.80, 4.00, 0.08, 400.0, 11.0),
    "claude-sonnet-4": ("anthropic", 3.00, 15.00, 0.30, 900.0, 18.0),
    "gemini-2.0-flash": ("google", 0.10, 0.40, 0.025, 300.0, 5.0),
    "mistral-small": ("mistral", 0.10, 0.30, 0.05, 350.0, 8.0),
}

_PROMPTS: dict[str, str] = {
    "support-v2.2": (
        "You are the support assistant for {company}. Answer the customer's question "
        "using only the help-center articles provided. Give complete step-by-step "
        "instructions. If the customer signs in with single sign-on (SSO), explain "
        "that passwords are managed by their identity provider and give the SSO steps. "
        "Be friendly and precise."
    ),
    "support-v2.3": (
        "You are the support assistant for {company}. Answer the customer's question "
        "using only the help-center articles provided. Be concise: answer in at most "
        "three short sentences and link the most relevant article. Be friendly."
    ),
    "summarize-v1.4": (
        "Summarize the document for a busy reader. Use 3-5 bullet points, keep names, "
        "numbers and dates exact, and end with the decisions and owners."
    ),
    "summarize-v1.5": (
        "Summarize the document in at most 4 bullet points. Lead with decisions and "
        "owners, keep names, numbers and dates exact, never invent facts."
    ),
    "checkout-v3.0": (
        "You help shoppers at checkout. Answer questions about the items in the cart "
        "(compatibility, sizing, delivery) in two sentences."
    ),
    "checkout-v3.1": (
        "You help shoppers at checkout. Answer questions about the items in the cart "
        "(compatibility, sizing, delivery) in two sentences, then suggest at most one "
        "relevant add-on the shopper is likely to need."
    ),
    "search-v1.0": (
        "Answer the search query in one paragraph using only the retrieved passages. "
        "Cite sources as [1], [2]. Say so when the passages do not answer the query."
    ),
    "search-v1.1": (
        "Answer the search query in one short paragraph using only the retrieved "
        "passages. Cite sources as [1], [2]. Say so when they do not answer it."
    ),
}

# feature index -> [(start as a fraction of the period, version label)]
_VERSION_SCHEDULE: tuple[tuple[tuple[float, str], ...], ...] = (
    ((0.0, "support-v2.2"), (0.5, "support-v2.3")),
    ((0.0, "summarize-v1.4"), (0.7, "summarize-v1.5")),
    ((0.0, "checkout-v3.0"),),  # v3.1 is the ai_on arm of the experiment
    ((0.0, "search-v1.0"), (0.4, "search-v1.1")),
)

# (slug, display name); ordered by size, the largest first.
_CUSTOMER_NAMES: tuple[tuple[str, str], ...] = (
    ("acme", "Acme Corp"),
    ("globex", "Globex Corporation"),
    ("initech", "Initech"),
    ("umbrella", "Umbrella Corporation"),
    ("hooli", "Hooli"),
    ("stark", "Stark Industries"),
    ("wayne", "Wayne Enterprises"),
    ("wonka", "Wonka Industries"),
    ("soylent", "Soylent Corp"),
    ("cyberdyne", "Cyberdyne Systems"),
    ("tyrell", "Tyrell Corporation"),
    ("massive_dynamic", "Massive Dynamic"),
    ("aperture", "Aperture Science"),
    ("oscorp", "Oscorp"),
    ("vandelay", "Vandelay Industries"),
    ("dunder_mifflin", "Dunder Mifflin"),
    ("pied_piper", "Pied Piper"),
    ("gringotts", "Gringotts"),
    ("monsters_inc", "Monsters, Inc."),
    ("nakatomi", "Nakatomi Trading"),
    ("oceanic", "Oceanic Airlines"),
    ("prestige", "Prestige Worldwide"),
    ("sterling_cooper", "Sterling Cooper"),
    ("bluth", "Bluth Company"),
    ("krusty_krab", "Krusty Krab"),
    ("planet_express", "Planet Express"),
    ("weyland", "Weyland-Yutani"),
    ("black_mesa", "Black Mesa"),
    ("virtucon", "Virtucon"),
    ("gekko", "Gekko & Co"),
    ("duff", "Duff Beer"),
    ("los_pollos", "Los Pollos Hermanos"),
    ("buy_n_large", "Buy n Large"),
    ("rekall", "Rekall"),
    ("spacely", "Spacely Sprockets"),
    ("cogswell", "Cogswell Cogs"),
    ("ollivanders", "Ollivanders"),
    ("strickland", "Strickland Propane"),
    ("wernham_hogg", "Wernham Hogg"),
    ("contoso", "Contoso"),
)
_REGIONS = ("us-east-1", "us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2")
_SSO_SHARE = {"enterprise": 0.26, "pro": 0.09, "free": 0.02}

# --------------------------------------------------------------------------- text banks

_IDPS = ("Okta", "Azure AD", "Google Workspace", "OneLogin", "JumpCloud")
_SUPPORT_ACTIONS = (
    ("export our ticket history", "Reports", "Export"),
    ("add a new teammate", "Workspace settings", "Invite members"),
    ("change the billing email", "Billing", "Edit billing contact"),
    ("set up the Slack integration", "Integrations", "Connect Slack"),
    ("rotate an API key", "Developer settings", "Rotate key"),
    ("merge duplicate contacts", "Contacts", "Merge"),
    ("change the default language", "Workspace settings", "Language"),
    ("schedule a weekly report", "Reports", "Schedule"),
    ("restore a deleted project", "Trash", "Restore"),
    ("raise the file upload limit", "Admin console", "Limits"),
    ("turn on two-factor authentication", "Security", "Require 2FA"),
    ("move a project to another workspace", "Project settings", "Transfer"),
)
_SUPPORT_PROBLEMS = (
    ("the dashboard", "showing the wrong totals"),
    ("the CSV export", "timing out"),
    ("the weekly report", "missing last week's data"),
    ("the mobile app", "stuck on the loading screen"),
    ("the webhook", "not firing"),
    ("search", "returning old results"),
    ("the invoice", "showing the wrong VAT number"),
)
_SSO_ISSUES = (
    "new hires can't log in",
    "users get 'SAML assertion invalid'",
    "a deprovisioned user can still log in",
    "the SCIM sync stopped updating groups",
    "people are asked for a password they never set",
    "we need to enforce SSO for every member",
)
_GOOD_FOLLOWUPS = (
    "The change applies to everyone in the workspace right away.",
    "If the option is greyed out, ask a workspace Owner to do it for you.",
    "You can undo this at any time from the same screen.",
    "Every change is recorded under Admin console > Audit log.",
    "The help-center article 'Workspace administration' has screenshots of each step.",
    "Large workspaces may need a few minutes before the change shows up everywhere.",
    "Nothing else needs to change on your side.",
)
_BAD_FILLERS = (
    "Please contact support for further assistance.",
    "This may depend on your configuration.",
    "Try refreshing the page and trying again.",
    "I don't have enough information to answer that precisely.",
    "You may want to check the settings page.",
    "Some features may not be available on every plan.",
)
_DOC_KINDS = ("meeting notes", "incident report", "sales call transcript", "contract", "email thread", "design review")
_DOC_SENTENCES = (
    "{a} walked through the Q{q} numbers: revenue is up {n}% but churn rose in the SMB segment.",
    "The outage on {d} lasted {n} minutes and was caused by an expired TLS certificate.",
    "{a} asked whether the renewal could move to an annual plan with a {n}% discount.",
    "Legal flagged clause {n} about data retention; {b} will send a redline by Friday.",
    "The team agreed to ship the new onboarding flow behind a feature flag on {d}.",
    "{b} owns the follow-up with the customer and will report back next week.",
    "Support volume dropped {n}% after the help-center redesign.",
    "{a} raised concerns about the migration timeline and the on-call load.",
)
_PEOPLE = ("Maria", "Dev", "Priya", "Tom", "Aiko", "Lars", "Fatima", "Jonas", "Chen", "Sofia")
_DAYS_OF_WEEK = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_PRODUCTS = (
    ("trail running shoes", 129.0, "running socks"),
    ("4K monitor", 349.0, "USB-C cable"),
    ("espresso machine", 499.0, "descaling kit"),
    ("noise-cancelling headphones", 279.0, "travel case"),
    ("standing desk", 599.0, "anti-fatigue mat"),
    ("rain jacket", 189.0, "waterproofing spray"),
    ("mechanical keyboard", 149.0, "wrist rest"),
    ("carry-on suitcase", 229.0, "luggage tag set"),
)
_SHOPPER_QUESTIONS = (
    "Is it compatible with my {device}?",
    "Which size should I get if I'm usually between sizes?",
    "Will it arrive in {city} before the weekend?",
    "Is there a cheaper option that does the same?",
    "Can I return it if it doesn't fit?",
)
_DEVICES = ("MacBook Air", "iPhone 15", "Windows laptop", "Pixel 8", "iPad")
_CITIES = ("Berlin", "Austin", "Lyon", "Toronto", "Melbourne", "Osaka", "Madrid")
_SEARCH_TOPICS = (
    ("refund policy", "for annual plans"),
    ("data retention", "for deleted users"),
    ("API rate limits", "on the Pro plan"),
    ("GDPR data export", "for a single customer"),
    ("SSO setup", "with Azure AD"),
    ("webhook retries", "after a timeout"),
    ("invoice currency", "change"),
    ("audit log", "retention period"),
)
_SEARCH_FACTS = (
    "The limit is applied per workspace and resets every minute.",
    "Requests over the limit get HTTP 429 with a Retry-After header.",
    "Annual plans can be refunded pro rata within 30 days.",
    "Deleted users' data is kept for 30 days, then removed permanently.",
    "Exports are delivered as a ZIP of JSON files within 24 hours.",
    "Retries use exponential backoff for up to 24 hours.",
    "Audit log entries are kept for 12 months on Enterprise plans.",
)
_DOC_TITLES = (
    "Billing FAQ",
    "Security overview",
    "API reference: limits",
    "Admin guide",
    "Data processing addendum",
    "Webhooks guide",
)
_COMMENTS_DOWN = (
    "Didn't answer my question.",
    "Too vague.",
    "This is wrong.",
    "Not helpful.",
    "It ignored half of my question.",
    "Made up a setting that doesn't exist.",
)
_COMMENTS_DOWN_SSO = (
    "We use SSO, there is no password to reset.",
    "Wrong instructions for SSO accounts.",
    "Way too short, the SAML steps are missing.",
    "Useless for SSO users.",
    "It keeps telling me to reset my password. We log in with Okta!",
)
_COMMENTS_UP = ("Perfect, thanks!", "Exactly what I needed.", "Saved me a ticket.", "Clear and quick.")
_EDIT_SWAPS = (
    ("open", "go to"),
    ("choose", "select"),
    ("click", "press"),
    ("right away", "immediately"),
    ("the usual cause", "the most likely cause"),
    ("ask", "contact"),
    ("Confirm", "Then confirm"),
)
_EDIT_SENTENCES = (
    "Note: if you sign in with SSO, your identity provider admin has to make this change.",
    "You can find this under Admin console > Security as well.",
    "Let us know if anything is unclear.",
    "This only applies to workspace Owners.",
)
_REFUSAL = "Sorry, I can't help with that request. A member of our team will follow up."


# --------------------------------------------------------------------------- public API


def demo_features() -> list[dict[str, Any]]:
    """The demo organization's AI features: key, name, description, value per success."""
    return [dict(f) for f in _FEATURES]


def demo_prices() -> list[dict[str, Any]]:
    """Per-million-token prices of the demo models, so the server's table can match."""
    return [
        {
            "provider": provider,
            "model": model,
            "input_per_mtok_usd": inp,
            "output_per_mtok_usd": out,
            "cached_input_per_mtok_usd": cached,
        }
        for model, (provider, inp, out, cached, _, _) in _MODELS.items()
    ]


def demo_prompt_versions() -> list[dict[str, Any]]:
    """Every prompt version the stream uses: feature, label, text and hash."""
    features = {
        "support": "support-copilot",
        "summarize": "summarize",
        "checkout": "checkout-assist",
        "search": "search-answers",
    }
    return [
        {
            "feature": features[label.split("-", 1)[0]],
            "prompt_version": label,
            "prompt": text,
            "prompt_hash": prompt_hash_of(text),
        }
        for label, text in _PROMPTS.items()
    ]


def demo_customers(config: DemoConfig | None = None) -> list[dict[str, Any]]:
    """The ~40 end-customer accounts: id, name, plan, region, expected traffic share."""
    return [
        {
            "customer_id": c.customer_id,
            "name": c.name,
            "plan": c.plan,
            "region": c.region,
            "traffic_share": round(c.share, 5),
        }
        for c in _build_customers((config or DemoConfig()).seed)
    ]


def demo_stream(config: DemoConfig | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("trace" | "feedback" | "outcome", item)`` in time order.

    Streaming and memory-bounded (only events still in the future of the current
    trace are buffered), so it scales to millions of traces. Feedback and outcomes
    always come after their trace; those that would happen after ``config.end`` are
    not emitted (they have not happened yet).
    """
    return _Generator(config or DemoConfig()).run()


def demo_batches(config: DemoConfig | None = None, size: int = 1000) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The stream grouped into API batches: ``(kind, [items])``, at most ``size`` each.

    Ready for ``POST /api/v1/{traces,feedback,outcomes}`` as ``{"batch": items}``.
    Whenever a feedback or outcome batch goes out, pending traces go out first, so
    every event's trace has been sent before it.
    """
    if size < 1:
        raise ValueError("size must be >= 1")
    buffers: dict[str, list[dict[str, Any]]] = {"trace": [], "feedback": [], "outcome": []}
    for kind, item in demo_stream(config):
        buffer = buffers[kind]
        buffer.append(item)
        if len(buffer) >= size:
            if kind != "trace" and buffers["trace"]:
                yield "trace", buffers["trace"]
                buffers["trace"] = []
            yield kind, buffer
            buffers[kind] = []
    for kind in ("trace", "feedback", "outcome"):
        if buffers[kind]:
            yield kind, buffers[kind]


# --------------------------------------------------------------------------- internals


class _Pending(NamedTuple):
    """A feedback or outcome item waiting for its time; ordered by (ts, seq) on the heap."""

    ts: float
    seq: int
    kind: str
    item: dict[str, Any]


def _mix64(x: int) -> int:
    # splitmix64 finaliser: a bijection on 64-bit ints, so counter-derived ids are
    # unique by construction yet look random.
    x &= _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


_DAY_PREFIX: dict[int, str] = {}


def _iso(ts: float) -> str:
    """Fast ISO 8601 UTC with milliseconds (datetime.isoformat is ~4x slower)."""
    total_ms = int(ts * 1000.0)
    sec, ms = divmod(total_ms, 1000)
    day, sod = divmod(sec, 86400)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).strftime("%Y-%m-%d")
        _DAY_PREFIX[day] = prefix
    hour, rem = divmod(sod, 3600)
    minute, second = divmod(rem, 60)
    return f"{prefix}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}Z"


@dataclass(frozen=True)
class _Customer:
    customer_id: str
    slug: str
    name: str
    plan: str
    region: str
    share: float
    users: int
    sso_share: float
    quality_offset: float
    salt: int


def _build_customers(seed: int) -> list[_Customer]:
    rng = random.Random(f"candor-demo-customers-{seed}")
    weights = [1.0 / (rank**1.1) for rank in range(1, len(_CUSTOMER_NAMES) + 1)]
    total = sum(weights)
    customers = []
    for rank, ((slug, name), weight) in enumerate(zip(_CUSTOMER_NAMES, weights, strict=True)):
        plan = "enterprise" if rank < 8 else "pro" if rank < 25 else "free"
        share = weight / total
        customers.append(
            _Customer(
                customer_id=f"cus_{slug}",
                slug=slug,
                name=name,
                plan=plan,
                region=rng.choice(_REGIONS),
                share=share,
                users=max(3, int(share * 3000)),
                sso_share=_SSO_SHARE[plan],
                quality_offset=rng.gauss(0.0, 0.025),
                salt=rng.getrandbits(32),
            )
        )
    return customers


def _hour_weights(start: datetime, hours: int, period_hours: int) -> list[float]:
    weights = []
    for h in range(hours):
        moment = start + timedelta(hours=h)
        # Daily cycle peaking mid-afternoon UTC (US + EU overlap), quieter weekends,
        # and ~30% growth over the period (continuing into the end's own day).
        daily = 0.22 + math.exp(-(((moment.hour - 15) / 4.5) ** 2))
        weekly = 0.55 if moment.weekday() >= 5 else 1.0
        trend = 0.85 + 0.3 * h / max(1, period_hours)
        weights.append(daily * weekly * trend)
    return weights


class _Generator:
    def __init__(self, config: DemoConfig) -> None:
        if config.traces < 0 or config.days <= 0:
            raise ValueError("traces must be >= 0 and days > 0")
        self.config = config
        self.end = config.resolved_end()
        # Whole days are laid from the end day's midnight, never from the end's hour: where a day
        # starts, what it holds and where the versions switch stay put whatever the hour of ``end``.
        self.day_end = datetime.combine(self.end.date(), datetime.min.time(), UTC)
        self.start = self.day_end - timedelta(days=config.days)
        self.start_ts = self.start.timestamp()
        self.end_ts = self.end.timestamp()
        self.rng = random.Random(config.seed)
        keys = random.Random(f"candor-demo-ids-{config.seed}")
        self.trace_key = keys.getrandbits(64)
        self.span_key = keys.getrandbits(64)
        self.outcome_key = keys.getrandbits(64)
        self.session_key = keys.getrandbits(64)
        self.customers = _build_customers(config.seed)
        cum = 0.0
        self.customer_cum = []
        for c in self.customers:
            cum += c.share
            self.customer_cum.append(cum)
        self.feature_cum = []
        cum = 0.0
        for share in _FEATURE_SHARE:
            cum += share
            self.feature_cum.append(cum)
        period = self.day_end.timestamp() - self.start_ts
        self.schedule = [
            [(self.start_ts + frac * period, label) for frac, label in versions] for versions in _VERSION_SCHEDULE
        ]
        self.hashes = {label: prompt_hash_of(text) for label, text in _PROMPTS.items()}
        self.prompt_sent: set[str] = set()
        self.pending: list[_Pending] = []
        # Systematic sampling of purchases (running sum of probabilities, random
        # start): each trace keeps its own probability, but an arm's realised rate
        # stays within one purchase of its expected rate, so the experiment's lift
        # shows up even in a 20k-trace demo instead of drowning in binomial noise.
        self.purchase_acc = {arm: keys.random() for arm in _PURCHASE_RATE}
        self.seq = 0
        self.trace_no = 0
        self.outcome_no = 0

    # ----------------------------------------------------------------- driver

    def run(self) -> Iterator[tuple[str, dict[str, Any]]]:
        rng = self.rng
        whole_hours = self.config.days * 24
        # The end's own day, up to its last (maybe partial) hour: its hours come after the whole
        # days', so the whole days' draws from the RNG never depend on it.
        today_s = self.end_ts - self.day_end.timestamp()
        hours = whole_hours + math.ceil(today_s / 3600.0)
        weights = _hour_weights(self.start, hours, whole_hours)
        total_w = sum(weights[:whole_hours])
        n = self.config.traces
        pending = self.pending
        cum_w = 0.0
        allocated = 0
        for h, w in enumerate(weights):
            # Cumulative rounding: the whole days' counts sum exactly to n, deterministically;
            # the end's day goes on at the same rate.
            cum_w += w
            upto = round(n * cum_w / total_w)
            count, allocated = upto - allocated, upto
            # The last hour of the end's day may be cut short by the end itself.
            span = min(1.0, (self.end_ts - self.start_ts) / 3600.0 - h)
            if span < 1.0:
                count = round(count * span)
            if not count:
                continue
            hour_ts = self.start_ts + h * 3600.0
            offsets = sorted(rng.random() * span for _ in range(count))
            for off in offsets:
                ts = hour_ts + off * 3600.0
                while pending and pending[0].ts <= ts:
                    due = heapq.heappop(pending)
                    yield due.kind, due.item
                yield "trace", self._trace(ts)
        end_ts = self.end_ts
        while pending:
            due = heapq.heappop(pending)
            if due.ts > end_ts:
                break  # the rest lies in the future: not happened yet
            yield due.kind, due.item
        pending.clear()

    def _push(self, ts: float, kind: str, item: dict[str, Any]) -> None:
        self.seq += 1
        heapq.heappush(self.pending, _Pending(ts, self.seq, kind, item))

    def _event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # ----------------------------------------------------------------- one trace

    def _trace(self, ts: float) -> dict[str, Any]:
        rng = self.rng
        rnd = rng.random
        lognorm = rng.lognormvariate
        self.trace_no += 1
        trace_id = f"tr_{_mix64(self.trace_key + self.trace_no):016x}"

        fi = bisect.bisect_left(self.feature_cum, rnd() * self.feature_cum[-1])
        ci = bisect.bisect_left(self.customer_cum, rnd() * self.customer_cum[-1])
        cust = self.customers[min(ci, len(self.customers) - 1)]
        user_no = int(rnd() * cust.users)
        # A user's auth method is a fixed property of the user (hash, not a draw).
        sso = ((user_no * 2654435761 + cust.salt) & 0xFFFF) / 65536.0 < cust.sso_share
        auth = "sso" if sso else "password"
        user_id = f"usr_{cust.slug}_{user_no:04d}"
        # Sessions: one per user per 4-hour block.
        block = int((ts - self.start_ts) // 14400)
        session_no = (cust.salt << 32) ^ (user_no << 16) ^ block
        session_id = f"ses_{_mix64(self.session_key + session_no):016x}"
        feature = _FEATURES[fi]["key"]

        version = None
        for since, label in self.schedule[fi]:
            if ts >= since:
                version = label
        experiment = variant = None
        holdback = False
        if fi == 2:
            experiment = "checkout-assist"
            r = rnd()
            if r < 0.10:
                variant, holdback, version = "holdback", True, None
            elif r < 0.55:
                variant = "control"
            else:
                variant, version = "ai_on", "checkout-v3.1"

        # ---- latent quality
        base = _BASE_QUALITY[version] if version else 0.0
        if version == "support-v2.3":
            base = 0.47 if sso else 0.83
        p_good = base + cust.quality_offset + (rnd() - 0.5) * 0.1
        p_good = 0.02 if p_good < 0.02 else 0.98 if p_good > 0.98 else p_good
        good = latent_good = rnd() < p_good
        r_status = rnd()
        error = r_status < 0.01 and not holdback
        blocked = 0.01 <= r_status < 0.03 and not holdback
        if error or blocked:
            good = False

        # ---- model, tokens, latency
        model = provider = None
        in_tok = out_tok = cached = 0
        ttft = latency = 0.0
        retrieval_ms = 0.0
        if fi == 0:
            model = "claude-sonnet-4" if rnd() < 0.25 else "claude-3-5-haiku"
            in_tok = int(lognorm(7.24, 0.35))  # median ~1400
            out_med = 220.0
            if version == "support-v2.3":
                out_med = 115.0 if sso else 200.0  # "be concise" cuts SSO steps
            out_tok = int(lognorm(math.log(out_med), 0.4))
            retrieval_ms = lognorm(4.4, 0.4)  # median ~80 ms
        elif fi == 1:
            model = "gemini-2.0-flash" if rnd() < 0.65 else "mistral-small"
            in_tok = int(lognorm(7.86, 0.6))  # median ~2600
            out_med = 140.0 if version == "summarize-v1.5" else 165.0
            out_tok = int(lognorm(math.log(out_med), 0.35))
        elif fi == 2:
            if not holdback:
                model = "gpt-4o-mini"
                in_tok = int(lognorm(6.48, 0.3))  # median ~650
                out_tok = int(lognorm(math.log(98.0 if variant == "ai_on" else 85.0), 0.35))
            retrieval_ms = lognorm(3.4, 0.3)  # cart lookup tool, ~30 ms
        else:
            model = "gpt-4o" if version == "search-v1.0" else "gpt-4o-mini"
            in_tok = int(lognorm(7.55, 0.4))  # median ~1900
            out_tok = int(lognorm(5.25, 0.4))  # median ~190
            retrieval_ms = lognorm(4.8, 0.45)  # median ~120 ms
        if model:
            provider, _, _, _, model_ttft, ms_per_tok = _MODELS[model]
            if blocked:
                out_tok = 18
            ttft = lognorm(math.log(model_ttft), 0.35)
            gen_ms = out_tok * ms_per_tok * lognorm(0.0, 0.15)
            if error:
                out_tok = 0
                gen_ms = 0.0
                ttft = 30000.0 if rnd() < 0.3 else ttft  # timeouts and fast failures
            if provider in ("anthropic", "openai") and in_tok > 1100 and rnd() < 0.55:
                # Provider prompt caching: the shared prefix, >= 1024 tokens, 128 steps.
                cached = min(in_tok - 64, 1024 + 128 * int(rnd() * 6))
            latency = retrieval_ms + ttft + gen_ms + 20.0
        else:
            latency = retrieval_ms + lognorm(3.0, 0.3)  # static fallback path

        # ---- text
        question, draft, ideal = _texts(rng, fi, good, sso, version, out_tok, cust.name)
        answer: str | None = draft
        if blocked:
            answer = _REFUSAL
        elif error or holdback:
            answer = None

        trace: dict[str, Any] = {
            "trace_id": trace_id,
            "feature": feature,
            "started_at": _iso(ts),
            "customer_id": cust.customer_id,
            "user_id": user_id,
            "session_id": session_id,
            "input": question,
            "status": "error" if error else "ok",
            "latency_ms": round(latency, 1),
            "fallback": holdback,
            "guardrail_blocked": blocked,
            "metadata": {"auth": auth, "plan": cust.plan, "region": cust.region},
        }
        if version:
            trace["prompt_version"] = version
            trace["prompt_hash"] = self.hashes[version]
            if version not in self.prompt_sent:
                # The template text is stored once per version: send it once.
                self.prompt_sent.add(version)
                trace["prompt"] = _PROMPTS[version]
        if model:
            trace["model"] = model
            trace["provider"] = provider
            trace["input_tokens"] = in_tok
            trace["output_tokens"] = out_tok
            if cached:
                trace["cached_tokens"] = cached
            if not error:
                trace["ttft_ms"] = round(ttft, 1)
            if rnd() < 0.05:
                # Most callers let the server price the call; some send their own cost.
                _, p_in, p_out, p_cached, _, _ = _MODELS[model]
                trace["cost_usd"] = round(((in_tok - cached) * p_in + cached * p_cached + out_tok * p_out) / 1e6, 8)
        if answer is not None:
            trace["output"] = answer
        if experiment:
            trace["experiment"] = experiment
            trace["variant"] = variant
        if self.config.spans:
            trace["spans"] = self._spans(fi, ts, retrieval_ms, ttft, latency, model, in_tok, out_tok)
        if self.config.include_truth and not holdback:
            trace["_truth"] = {"p_good": round(p_good, 4), "good": good}

        self._feedback(trace, ts, fi, good, latent_good - p_good, sso, version, variant, ideal)
        return trace

    def _spans(
        self,
        fi: int,
        ts: float,
        retrieval_ms: float,
        ttft: float,
        latency: float,
        model: str | None,
        in_tok: int,
        out_tok: int,
    ) -> list[dict[str, Any]]:
        # Span ids come from the trace counter, not the RNG, so turning spans on or off
        # leaves every other value in the stream unchanged.
        base = (self.span_key + (self.trace_no << 2)) & _M64
        spans: list[dict[str, Any]] = []
        t = ts + 0.005
        if retrieval_ms:
            if fi == 2:
                name, kind = "cart.lookup", "tool"
                attrs: dict[str, Any] = {"gen_ai.tool.name": "cart_lookup", "items": 2}
            else:
                name, kind = "kb.search", "retrieval"
                attrs = {"db.system": "pgvector", "top_k": 5}
            spans.append(
                {
                    "span_id": f"{_mix64(base):016x}",
                    "parent_span_id": None,
                    "name": name,
                    "kind": kind,
                    "start": _iso(t),
                    "end": _iso(t + retrieval_ms / 1000.0),
                    "attributes": attrs,
                }
            )
            t += retrieval_ms / 1000.0
        if model:
            spans.append(
                {
                    "span_id": f"{_mix64(base + 1):016x}",
                    "parent_span_id": None,
                    "name": f"chat {model}",
                    "kind": "llm",
                    "start": _iso(t),
                    "end": _iso(ts + latency / 1000.0),
                    "model": model,
                    "input_tokens": in_tok,
                    "output_tokens": out_tok,
                    "attributes": {"gen_ai.operation.name": "chat", "ttft_ms": round(ttft, 1)},
                }
            )
        return spans

    # ----------------------------------------------------------------- feedback

    def _feedback(
        self,
        trace: dict[str, Any],
        ts: float,
        fi: int,
        good: bool,
        surprise: float,
        sso: bool,
        version: str | None,
        variant: str | None,
        ideal: str | None,
    ) -> None:
        rng = self.rng
        rnd = rng.random
        lognorm = rng.lognormvariate
        trace_id = trace["trace_id"]
        user_id = trace["user_id"]
        session_id = trace["session_id"]
        answer = trace.get("output")
        holdback = trace["fallback"]
        error = trace["status"] == "error"
        seen_at = ts + trace["latency_ms"] / 1000.0

        def emit(kind: str, delay_s: float, **fields: Any) -> None:
            at = seen_at + delay_s
            item = {
                "event_id": self._event_id(),
                "trace_id": trace_id,
                "kind": kind,
                "user_id": user_id,
                "session_id": session_id,
                "occurred_at": _iso(at),
            }
            if version:
                item["prompt_version"] = version
            item.update(fields)
            self._push(at, "feedback", item)

        if error:
            # A failed call shows nothing to rate; people mostly just retry.
            if rnd() < 0.45:
                emit("retry", lognorm(1.6, 0.5))
        elif not holdback:
            # Explicit thumbs: sparse, and unhappy users answer far more often.
            if rnd() < (0.052 if good else 0.165):
                down = rnd() < (0.06 if good else 0.9)
                fields: dict[str, Any] = {"value": -1 if down else 1}
                if rnd() < (0.35 if down else 0.08):
                    pool = (
                        _COMMENTS_DOWN_SSO
                        if down and sso and version == "support-v2.3"
                        else _COMMENTS_DOWN
                        if down
                        else _COMMENTS_UP
                    )
                    fields["comment"] = pool[int(rnd() * len(pool))]
                emit("thumb", lognorm(3.2, 0.7), **fields)
            if fi == 1 and rnd() < (0.015 if good else 0.035):
                value = (5 if rnd() < 0.6 else 4) if good else 1 + int(rnd() * 3)
                emit("rating", lognorm(3.5, 0.6), value=value)
            if fi == 0 and answer and rnd() < (0.015 if good else 0.12):
                edited = _edit_text(rng, answer, ideal, heavy=not good)
                emit("edit", lognorm(4.0, 0.6), original_text=answer, edited_text=edited)
            if answer and rnd() < (0.24 if good else 0.05):
                chars = len(answer) if rnd() < 0.7 else int(len(answer) * (0.2 + 0.7 * rnd()))
                emit("copy", lognorm(2.5, 0.6), value=chars)
            if rnd() < (0.02 if good else 0.14):
                emit("retry", lognorm(1.8, 0.5))
            if fi in (0, 3) and rnd() < (0.015 if good else 0.10):
                emit("rephrase", lognorm(2.8, 0.5))
            if fi == 2 and rnd() < (0.42 if good else 0.07):
                emit("accept", lognorm(3.0, 0.5))
        if not error and rnd() < 0.3:
            dwell_ms = lognorm(9.1 if good else 8.0, 0.6)  # median ~9 s vs ~3 s
            emit("dwell", dwell_ms / 1000.0, value=int(dwell_ms))
        if not error and rnd() < (0.015 if good else 0.08):
            emit("abandon", lognorm(3.5, 0.8))

        # ---- business outcomes
        if fi == 0:
            if rnd() < (0.64 if good else 0.22):
                self._outcome(
                    seen_at + min(lognorm(8.9, 1.0), 259200.0),  # median ~2 h
                    "ticket_resolved",
                    trace,
                    value_usd=4.0,
                )
        elif fi == 2:
            # Checkout conversion per arm: control +4%, ai_on +8% relative to holdback.
            # `surprise` (latent good minus its probability) has mean 0, so tilting by
            # it makes good answers convert more while each arm keeps its exact rate.
            arm = variant or "holdback"
            p = _PURCHASE_RATE[arm]
            if not holdback:
                p += 0.15 * surprise
            self.purchase_acc[arm] += p
            if self.purchase_acc[arm] >= 1.0:
                self.purchase_acc[arm] -= 1.0
                self._outcome(
                    seen_at + min(lognorm(5.9, 0.8), 86400.0),  # median ~6 min
                    "purchase",
                    trace,
                    value_usd=round(lognorm(4.06, 0.6), 2),  # median ~$58
                )

    def _outcome(self, at: float, name: str, trace: dict[str, Any], value_usd: float) -> None:
        self.outcome_no += 1
        item: dict[str, Any] = {
            "outcome_id": f"oc_{_mix64(self.outcome_key + self.outcome_no):016x}",
            "name": name,
            "trace_id": trace["trace_id"],
            "session_id": trace["session_id"],
            "customer_id": trace["customer_id"],
            "value_usd": value_usd,
            "occurred_at": _iso(at),
        }
        if "variant" in trace:
            item["variant"] = trace["variant"]
        self._push(at, "outcome", item)


_BASE_QUALITY: dict[str, float] = {
    "support-v2.2": 0.78,
    "support-v2.3": 0.78,  # overridden per auth method in _trace
    "summarize-v1.4": 0.74,
    "summarize-v1.5": 0.79,
    "checkout-v3.0": 0.80,
    "checkout-v3.1": 0.83,
    "search-v1.0": 0.81,
    "search-v1.1": 0.78,
}
_PURCHASE_RATE = {"holdback": 0.40, "control": 0.416, "ai_on": 0.432}


# --------------------------------------------------------------------------- text


def _texts(
    rng: random.Random,
    fi: int,
    good: bool,
    sso: bool,
    version: str | None,
    out_tok: int,
    company: str,
) -> tuple[str, str, str | None]:
    """(user input, AI output, the answer a human would have wanted, if known)."""
    rnd = rng.random

    def pick(seq: tuple[Any, ...]) -> Any:
        return seq[int(rnd() * len(seq))]

    def fill(parts: list[str], pool: tuple[str, ...], upto: int) -> str:
        # Walk the pool from a random start: no sentence repeats in one answer.
        start = int(rnd() * len(pool))
        need = min(len(pool), max(0, upto - len(parts)))
        return " ".join(parts + [pool[(start + k) % len(pool)] for k in range(need)])

    n_sent = max(1, min(7, round(out_tok / 30)))
    if fi == 0:
        if sso and rnd() < 0.55:
            idp = pick(_IDPS)
            issue = pick(_SSO_ISSUES)
            question = f"We sign in to {company} through {idp} SSO and {issue}. How do we fix this?"
            right = [
                f"Because your workspace signs in with {idp}, passwords and access are "
                "managed by your identity provider, not in the app.",
                f"In {idp}, open the app assignment for the workspace and check that "
                "the affected people are assigned and their group is synced.",
                "Then go to Admin console > Security > Single sign-on and click "
                "'Test connection' to confirm the SAML settings.",
            ]
            if version == "support-v2.3":
                wrong = ["You can reset your password from the login page by clicking 'Forgot password'."]
            else:
                wrong = [
                    "Please make sure your login details are correct.",
                    "You can reset your password from the login page.",
                ]
        else:
            if rnd() < 0.6:
                action, area, button = pick(_SUPPORT_ACTIONS)
                question = f"How do I {action}?"
                right = [
                    f"To {action}, open {area} and choose '{button}'.",
                    "Confirm the change in the dialog that opens.",
                ]
            else:
                thing, problem = pick(_SUPPORT_PROBLEMS)
                question = f"Why is {thing} {problem}? It started this week."
                right = [
                    f"When {thing} is {problem}, the usual cause is a stale cache.",
                    "Open Workspace settings > Data and click 'Rebuild', then reload.",
                ]
            wrong = [pick(_BAD_FILLERS)]
        ideal = fill(right, _GOOD_FOLLOWUPS, max(n_sent, 3))
        if good:
            return question, fill(right, _GOOD_FOLLOWUPS, n_sent), ideal
        return question, fill(wrong, _BAD_FILLERS, min(n_sent, 3)), ideal

    if fi == 1:
        kind = pick(_DOC_KINDS)
        a, b = pick(_PEOPLE), pick(_PEOPLE)
        sentences = [
            s.format(a=a, b=b, q=1 + int(rnd() * 4), n=2 + int(rnd() * 30), d=pick(_DAYS_OF_WEEK))
            for s in (pick(_DOC_SENTENCES), pick(_DOC_SENTENCES), pick(_DOC_SENTENCES))
        ]
        question = f"Summarize this {kind}:\n" + " ".join(sentences)
        if good:
            bullets = [f"- {s}" for s in sentences[: max(2, min(3, n_sent))]]
            bullets.append(f"- Next step: {b} follows up by Friday.")
        else:
            bullets = ["- The document discusses several topics.", f"- {a} shared some updates."]
        return question, "\n".join(bullets), None

    if fi == 2:
        product, price, addon = pick(_PRODUCTS)
        ask = pick(_SHOPPER_QUESTIONS).format(device=pick(_DEVICES), city=pick(_CITIES))
        question = f"Cart: {product} (${price:.2f}). Shopper asks: {ask}"
        if good:
            answer = (
                f"Yes, the {product} is a good fit for that, and it ships in 2-3 "
                f"business days with free returns within 30 days. Many shoppers also "
                f"add the {addon}."
            )
        else:
            answer = f"Our {product} is very popular! Check out our other products too."
        return question, answer, None

    topic, aspect = pick(_SEARCH_TOPICS)
    question = f"{topic} {aspect}"
    if good:
        facts = [pick(_SEARCH_FACTS) for _ in range(max(1, min(3, n_sent - 1)))]
        answer = f"{' '.join(facts)} [1] Sources: [1] {pick(_DOC_TITLES)}, [2] {pick(_DOC_TITLES)}"
    else:
        answer = f"{pick(_BAD_FILLERS)} Sources: [1] {pick(_DOC_TITLES)}"
    return question, answer, None


def _edit_text(rng: random.Random, text: str, ideal: str | None, heavy: bool) -> str:
    """Edit the text as an agent would: rewrite a bad draft, touch up a good one."""
    rnd = rng.random
    if heavy and ideal:
        # Bad drafts are mostly replaced by the answer the agent wanted to send.
        edited = ideal
        if rnd() < 0.4:
            edited = f"{edited} {_EDIT_SENTENCES[int(rnd() * len(_EDIT_SENTENCES))]}"
        return edited
    sentences = text.split(". ")
    if len(sentences) > 2 and rnd() < 0.5:
        del sentences[-1 if rnd() < 0.5 else int(rnd() * len(sentences))]  # trim filler
        text = ". ".join(sentences)
        if not text.endswith("."):
            text += "."
    for old, new in _EDIT_SWAPS:
        if old in text and rnd() < 0.6:
            text = text.replace(old, new, 1)
            break
    else:
        text = f"Hi! {text}" if rnd() < 0.5 else f"{text} {_EDIT_SENTENCES[-2]}"
    return text


# --------------------------------------------------------------------------- CLI


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate Candor demo data.")
    parser.add_argument("--traces", type=int, default=DemoConfig.traces)
    parser.add_argument("--days", type=int, default=DemoConfig.days)
    parser.add_argument("--seed", type=int, default=DemoConfig.seed)
    parser.add_argument("--no-spans", action="store_true")
    parser.add_argument("--jsonl", action="store_true", help="write items as JSON lines")
    args = parser.parse_args(argv)
    config = DemoConfig(traces=args.traces, days=args.days, seed=args.seed, spans=not args.no_spans)
    counts: dict[str, int] = {}
    started = time.perf_counter()
    if args.jsonl:
        import json

        out = sys.stdout
        for kind, item in demo_stream(config):
            counts[kind] = counts.get(kind, 0) + 1
            out.write(json.dumps({"type": kind, "item": item}) + "\n")
    else:
        for kind, _ in demo_stream(config):
            counts[kind] = counts.get(kind, 0) + 1
    elapsed = time.perf_counter() - started
    summary = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"generated {summary} in {elapsed:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
