from services.panel.app import Settings
from shared.serve import serve

serve("services.panel.app:create_app", Settings())
