"""The Slack front end: the request URL Slack posts button presses and form submissions to (Interactivity).

It translates Slack's signed form posts onto ``server.services.slack_approvals`` and back; docs/slack-approvals.md
says how to point a Slack app at it.
"""

from server.slack.interactions import routes

__all__ = ["routes"]
