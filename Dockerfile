FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY kalshi_insights kalshi_insights
COPY markets markets
COPY backtests backtests
RUN pip install .
COPY . .
# Static files are collected at build time and served by WhiteNoise.
RUN DEBUG=false SECRET_KEY=build-only python manage.py collectstatic --noinput

RUN useradd --create-home app && mkdir -p /app/var && chown -R app /app/var
USER app
EXPOSE 8000
CMD ["gunicorn", "kalshi_insights.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
