"""Database plumbing shared by every area: the embedded server, DSNs, pools, SQL files."""
