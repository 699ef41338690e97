"""The GPU owner's agent. Never imports Django: it runs on machines that only talk to the marketplace API."""
