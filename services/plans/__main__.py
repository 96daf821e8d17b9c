from services.plans.app import Settings
from shared.serve import serve

serve("services.plans.app:create_app", Settings())
