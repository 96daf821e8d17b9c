from services.hub.app import Settings
from shared.serve import serve

serve("services.hub.app:create_app", Settings())
