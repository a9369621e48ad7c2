"""Studio: the web console served at /studio (server-rendered pages, no build step)."""
