"""The service's routes, one ``APIRouter`` per resource; :func:`poetry_lm.serve.app.create_app`
includes them all (ROUTERS)."""
