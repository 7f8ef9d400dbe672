"""One APIRouter per concern; ``server.api`` mounts them all under /api."""
