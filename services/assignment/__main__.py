from services.assignment.app import Settings
from shared.serve import serve

serve("services.assignment.app:create_app", Settings())
