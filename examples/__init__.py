"""Integration examples, in the repository only (not shipped in the package): a FastAPI app
(``examples/fastapi_app.py``) and a plain SQLAlchemy script (``examples/sqlalchemy_script.py``)
that enqueue in their own transactions. Install ``pgqueue[examples]`` to run them. The jobs of
``pgqueue demo`` ship with pgqueue as :mod:`pgqueue.examples.stdlib_jobs`.
"""
