"""The dashboard's static files (static/), served by huddle.transports.dashboard."""
