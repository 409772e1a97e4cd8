"""The builtin credential types: their fields and the environment variables agents get.

Plain data with no dependencies: the in-container entry point reads it to export variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODEL_BROKER = "model broker"
PLACEHOLDERS = "placeholders"
SSH_AGENT = "ssh-agent"


@dataclass(frozen=True)
class Field:
    """One file of a credential instance, `<type>/<instance>/<name>`."""

    name: str
    #: Environment variables this field is exported as, inside the agent.
    env: tuple[str, ...] = ()
    secret: bool = True
    help: str = ""


@dataclass(frozen=True)
class CredentialType:
    name: str
    label: str
    description: str
    fields: tuple[Field, ...]
    #: One line for the prompt's <credential-context>: what the agent can do with it.
    agent_context: str = ""
    #: Used by the gateway or the CLI only; never staged into a run.
    host_only: bool = False
    help_url: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    #: The hosts this credential exists for: a run that has it may reach them under
    #: `[network] mode = "allowlist"` without listing them (entries as in `allow`).
    hosts: tuple[str, ...] = ()
    #: How its secrets are kept out of runs whose egress is checked: `MODEL_BROKER` (the
    #: model broker uses the key), `PLACEHOLDERS` (the proxy swaps placeholders for the values
    #: in requests to `hosts`; for tokens sent in headers), `SSH_AGENT` (an ssh-agent of the
    #: run holds the key), or None: files, as they are (types
    #: whose secrets sign things inside the run, or that have no hosts).
    brokered: str | None = None

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


def _token(
    name: str,
    label: str,
    env: tuple[str, ...],
    context: str,
    desc: str,
    hosts: tuple[str, ...],
) -> CredentialType:
    return CredentialType(
        name, label, desc, (Field("token", env),), context, hosts=hosts, brokered=PLACEHOLDERS
    )


def _provider(provider: str, label: str, hosts: tuple[str, ...]) -> CredentialType:
    return CredentialType(
        f"{provider}_key",
        f"{label} API key",
        f"API key for {label} models; handed to the model client, never exported.",
        (Field("token", help=f"your {label} API key"),),
        hosts=hosts,
        brokered=MODEL_BROKER,
    )


def _secret(name: str, label: str) -> CredentialType:
    return CredentialType(
        name,
        label,
        f"{label}; used by the gateway to verify webhooks.",
        (Field("secret"),),
        host_only=True,
    )


#: GitHub's API, git over HTTPS, and its content hosts (raw files, release assets, archives).
GITHUB_HOSTS = (
    "github.com",
    "api.github.com",
    "codeload.github.com",
    "uploads.github.com",
    "*.githubusercontent.com",
)
X_HOSTS = ("api.x.com", "api.twitter.com", "upload.twitter.com")

BUILTIN: dict[str, CredentialType] = {
    t.name: t
    for t in (
        _token(
            "github_token",
            "GitHub token",
            ("GITHUB_TOKEN", "GH_TOKEN"),
            "`GITHUB_TOKEN` / `GH_TOKEN`: GitHub API access (gh CLI, git over HTTPS)",
            "A GitHub personal access token.",
            GITHUB_HOSTS,
        ),
        *(
            _provider(p, label, hosts)
            for p, label, hosts in (
                ("anthropic", "Anthropic", ("api.anthropic.com",)),
                ("openai", "OpenAI", ("api.openai.com",)),
                ("groq", "Groq", ("api.groq.com",)),
                ("google", "Google", ("generativelanguage.googleapis.com",)),
                ("xai", "xAI", ("api.x.ai",)),
                ("mistral", "Mistral", ("api.mistral.ai",)),
                ("openrouter", "OpenRouter", ("openrouter.ai",)),
                # Their server is the model's base_url: its host is allowed through the model.
                ("custom", "Custom provider", ()),
                ("openai_compatible", "OpenAI-compatible server", ()),
            )
        ),
        CredentialType(
            "git_ssh",
            "Git SSH key",
            "SSH key and identity for git clone/push over SSH.",
            (
                Field(
                    "id_rsa", help="private key (paste it, or --field id_rsa=@~/.ssh/id_ed25519)"
                ),
                Field(
                    "username",
                    ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"),
                    secret=False,
                    help="name for commits",
                ),
                Field(
                    "email",
                    ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"),
                    secret=False,
                    help="email for commits",
                ),
            ),
            "`GIT_SSH_COMMAND`: git over SSH with your key; commits carry your name and email",
            hosts=("github.com:22",),
            brokered=SSH_AGENT,
        ),
        _token(
            "sentry_token",
            "Sentry token",
            ("SENTRY_AUTH_TOKEN",),
            "`SENTRY_AUTH_TOKEN`: Sentry API access",
            "A Sentry auth token.",
            ("sentry.io", "*.sentry.io"),
        ),
        _token(
            "linear_token",
            "Linear token",
            ("LINEAR_API_TOKEN",),
            "`LINEAR_API_TOKEN`: Linear API access",
            "A Linear API token.",
            ("api.linear.app",),
        ),
        CredentialType(
            "linear_oauth",
            "Linear OAuth",
            "Linear OAuth application credentials.",
            (
                Field("client_id", ("LINEAR_CLIENT_ID",)),
                Field("client_secret", ("LINEAR_CLIENT_SECRET",)),
                Field("access_token", ("LINEAR_ACCESS_TOKEN",)),
                Field("refresh_token", ("LINEAR_REFRESH_TOKEN",)),
            ),
            "`LINEAR_ACCESS_TOKEN` and friends: Linear API via OAuth",
            hosts=("api.linear.app", "linear.app"),
        ),
        _token(
            "bugsnag_token",
            "Bugsnag token",
            ("BUGSNAG_AUTH_TOKEN",),
            "`BUGSNAG_AUTH_TOKEN`: Bugsnag API access",
            "A Bugsnag auth token.",
            ("api.bugsnag.com",),
        ),
        _token(
            "netlify_token",
            "Netlify token",
            ("NETLIFY_AUTH_TOKEN",),
            "`NETLIFY_AUTH_TOKEN`: Netlify API access",
            "A Netlify auth token.",
            ("api.netlify.com",),
        ),
        _token(
            "mintlify_token",
            "Mintlify token",
            ("MINTLIFY_API_TOKEN",),
            "`MINTLIFY_API_TOKEN`: Mintlify API access",
            "A Mintlify API token.",
            ("api.mintlify.com",),
        ),
        _token(
            "slack_bot_token",
            "Slack bot token",
            ("SLACK_BOT_TOKEN",),
            "`SLACK_BOT_TOKEN`: Slack API as your bot",
            "A Slack bot token.",
            ("slack.com", "*.slack.com"),
        ),
        CredentialType(
            "discord_bot",
            "Discord bot",
            "A Discord application and its bot token.",
            (
                Field("application_id", ("DISCORD_APPLICATION_ID",), secret=False),
                Field("public_key", ("DISCORD_PUBLIC_KEY",), secret=False),
                Field("bot_token", ("DISCORD_BOT_TOKEN",)),
            ),
            "`DISCORD_BOT_TOKEN`: Discord API as your bot",
            # Not brokered: its gateway (a WebSocket) takes the token inside a message.
            hosts=("discord.com", "gateway.discord.gg", "cdn.discordapp.com"),
        ),
        CredentialType(
            "reddit_oauth",
            "Reddit OAuth",
            "A Reddit script application.",
            (
                Field("client_id", ("REDDIT_CLIENT_ID",)),
                Field("client_secret", ("REDDIT_CLIENT_SECRET",)),
                Field("username", ("REDDIT_USERNAME",), secret=False),
                Field("password", ("REDDIT_PASSWORD",)),
                Field("user_agent", ("REDDIT_USER_AGENT",), secret=False),
            ),
            "`REDDIT_CLIENT_ID` and friends: Reddit API",
            hosts=("www.reddit.com", "oauth.reddit.com"),
        ),
        CredentialType(
            "x_twitter_api",
            "X (Twitter) API",
            "X API app credentials.",
            (
                Field("consumer_key", ("X_CONSUMER_KEY",)),
                Field("consumer_secret", ("X_CONSUMER_SECRET",)),
                Field("bearer_token", ("X_BEARER_TOKEN",)),
            ),
            "`X_BEARER_TOKEN` and friends: X API",
            hosts=X_HOSTS,
        ),
        CredentialType(
            "x_twitter_user_oauth1",
            "X user (OAuth 1)",
            "X user access token.",
            (
                Field("access_token", ("X_ACCESS_TOKEN",)),
                Field("access_token_secret", ("X_ACCESS_TOKEN_SECRET",)),
            ),
            "`X_ACCESS_TOKEN`: X API as a user",
            hosts=X_HOSTS,
        ),
        CredentialType(
            "x_twitter_user_oauth2",
            "X user (OAuth 2)",
            "X user OAuth 2 credentials.",
            (
                Field("client_id", ("X_OAUTH2_CLIENT_ID",)),
                Field("client_secret", ("X_OAUTH2_CLIENT_SECRET",)),
                Field("access_token", ("X_OAUTH2_ACCESS_TOKEN",)),
                Field("refresh_token", ("X_OAUTH2_REFRESH_TOKEN",)),
            ),
            "`X_OAUTH2_ACCESS_TOKEN`: X API as a user",
            hosts=X_HOSTS,
        ),
        CredentialType(
            "gcp_service_account",
            "GCP service account",
            "A Google Cloud service account key.",
            (Field("key_json", ("GOOGLE_APPLICATION_CREDENTIALS_JSON",)),),
            "`GOOGLE_APPLICATION_CREDENTIALS_JSON`: Google Cloud as the service account",
            hosts=("oauth2.googleapis.com", "*.googleapis.com"),
        ),
        CredentialType(
            "vultr_api_key",
            "Vultr API key",
            "Vultr API access.",
            (Field("api_key", ("VULTR_API_KEY",)),),
            "`VULTR_API_KEY`: Vultr API",
            hosts=("api.vultr.com",),
            brokered=PLACEHOLDERS,
        ),
        CredentialType(
            "hetzner_api_key",
            "Hetzner API key",
            "Hetzner Cloud API access.",
            (Field("api_key", ("HETZNER_API_KEY",)),),
            "`HETZNER_API_KEY`: Hetzner API",
            hosts=("api.hetzner.cloud",),
            brokered=PLACEHOLDERS,
        ),
        CredentialType(
            "cloudflare_api_token",
            "Cloudflare API token",
            "Cloudflare API access.",
            (Field("api_token", ("CLOUDFLARE_API_TOKEN",)),),
            "`CLOUDFLARE_API_TOKEN`: Cloudflare API",
            hosts=("api.cloudflare.com",),
            brokered=PLACEHOLDERS,
        ),
        _secret("github_webhook_secret", "GitHub webhook secret"),
        _secret("sentry_client_secret", "Sentry client secret"),
        _secret("linear_webhook_secret", "Linear webhook secret"),
        _secret("mintlify_webhook_secret", "Mintlify webhook secret"),
        _secret("slack_signing_secret", "Slack signing secret"),
        _secret("generic_webhook_secret", "Webhook signing secret"),
        CredentialType(
            "vps_ssh",
            "VPS SSH key",
            "SSH key pair for provisioning servers.",
            (Field("private_key"), Field("public_key", secret=False)),
            host_only=True,
        ),
        CredentialType(
            "gateway_api_key",
            "Gateway API key",
            "Bearer key for the gateway's operator API.",
            (Field("key"),),
            host_only=True,
        ),
    )
}


def provider_key_type(provider: str) -> str:
    """The credential type holding a model provider's API key."""
    return f"{provider.replace('-', '_')}_key"


def brokering(name: str) -> str | None:
    """How runs whose egress is checked get credential type `name` (see `brokered`)."""
    kind = BUILTIN.get(name)
    return kind.brokered if kind is not None else None
