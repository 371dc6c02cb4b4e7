"""SIP user agent: a sans-IO core (message, headers, uri, sdp, auth, transaction, dialog, useragent)
and its asyncio UDP adapter (udp). See docs/sip.md for the application API."""
