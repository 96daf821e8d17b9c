from services.reporting.app import Settings
from shared.serve import serve

serve("services.reporting.app:create_app", Settings())
