//! HttpLib: the actor owning the REST API's server (actix-web). The routes, errors and
//! security live in [`crate::http`]; this actor binds, serves, and stops the server
//! gracefully when it stops.
//!
//! Middleware, outermost first: one tracing span and one request count per request;
//! the [gate](crate::http::security::gate) (CORS, rate limit, bearer token, the JSON
//! error shape); the body size limit.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::dev::{ServerHandle, Service, ServiceRequest};
use actix_web::{middleware, web, App, HttpServer};
use tracing::Instrument;

use crate::http::events::{feed, EventHub};
use crate::telemetry::RequestLabels;

pub use crate::http::{
    configure, ApiError, ApiHandles, ApiSettings, ApiShared, ErrorBody, ErrorCode, TlsFiles,
    MAX_BODY_BYTES,
};

/// The actor owning the HTTP server; stopping it stops the server gracefully.
#[derive(Debug)]
pub struct HttpLib {
    server: ServerHandle,
    /// Address the server is bound to (port 0 resolved).
    pub local_addr: SocketAddr,
}

impl HttpLib {
    /// Binds `listen` and starts serving on the current actix system, with the
    /// operator's `settings`; the event stream follows the StateManager's writes.
    pub fn start_server(
        listen: SocketAddr,
        handles: ApiHandles,
        settings: ApiSettings,
    ) -> std::io::Result<Addr<HttpLib>> {
        let metrics = handles.metrics.clone();
        let max_body_bytes = settings.max_body_bytes;
        let tls = settings.tls.clone();
        let artifacts = web::Data::new(settings.artifacts.clone());
        let shared = web::Data::new(ApiShared::new(settings));
        let hub: Arc<EventHub> = shared.events.clone();
        let state = handles.state.clone();
        actix::spawn(async move {
            match state.subscribe_changes().await {
                Ok(changes) => feed(changes, hub).await,
                Err(error) => tracing::error!(%error, "event stream has no source"),
            }
        });
        let data = web::Data::new(handles);
        let server = HttpServer::new(move || {
            let metrics = metrics.clone();
            App::new()
                .app_data(data.clone())
                .app_data(shared.clone())
                .app_data(artifacts.clone())
                .app_data(web::PayloadConfig::new(max_body_bytes))
                .configure(crate::http::routes)
                .default_service(web::to(crate::http::error::no_route))
                .wrap(middleware::from_fn(crate::http::security::gate))
                .wrap_fn(move |request: ServiceRequest, service| {
                    // One span per request, the root of the trace of what it causes.
                    let method = request.method().to_string();
                    let route = request
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_string());
                    let span = tracing::info_span!(
                        "http_request",
                        otel.name = %format_args!("HttpLib::{method} {route}"),
                        http.method = %method,
                        http.route = %route,
                        http.status = tracing::field::Empty,
                    );
                    let metrics = metrics.clone();
                    let response = service.call(request).instrument(span.clone());
                    async move {
                        let response = response.await?;
                        let status = response.status().as_u16();
                        span.record("http.status", status);
                        metrics
                            .requests
                            .get_or_create(&RequestLabels {
                                method,
                                route,
                                status: status.to_string(),
                            })
                            .inc();
                        Ok(response)
                    }
                })
        })
        .workers(2)
        .disable_signals();
        let server = match tls {
            None => server.bind(listen)?,
            Some(files) => {
                server.bind_rustls_0_23(listen, crate::http::tls::server_config(&files)?)?
            }
        };
        let local_addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("server bound to no address"))?;
        let server = server.run();
        let handle = server.handle();
        actix::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "http server stopped");
            }
        });
        tracing::info!(%local_addr, "REST API listening");
        Ok(HttpLib {
            server: handle,
            local_addr,
        }
        .start())
    }
}

impl Actor for HttpLib {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        let server = self.server.clone();
        actix::spawn(async move { server.stop(true).await });
        Running::Stop
    }
}

/// Asks the HttpLib for its bound address.
#[derive(Debug, Message)]
#[rtype(result = "SocketAddr")]
pub struct LocalAddr;

impl Handler<LocalAddr> for HttpLib {
    type Result = MessageResult<LocalAddr>;
    fn handle(&mut self, _: LocalAddr, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.local_addr)
    }
}
