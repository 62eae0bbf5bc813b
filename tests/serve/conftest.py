import pytest


@pytest.fixture(scope="session")
def app():
    """The service with the shipped model, loaded once for all the serve tests."""
    from poetry_lm.serve.app import create_app

    app = create_app()
    yield app
    app.state.batcher.close()


@pytest.fixture(scope="session")
def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)
