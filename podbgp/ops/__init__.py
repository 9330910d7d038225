"""Operations: REST API and auth, JSON views, OpenAPI, metrics, sd_notify, REST client."""
