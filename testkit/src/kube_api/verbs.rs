//! The API's verbs on collections, objects and their subresources.

use axum::{
    body::Bytes,
    http::{Method, header},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    Shared,
    http::Request,
    object::{merge_patch, meta, meta_mut, present},
    registry::ResourceType,
    status::{Failure, json_response},
    store::Scope,
    subresource,
};

pub(crate) fn list(shared: &Shared, request: &Request) -> Result<Response, Failure> {
    let (rt, selectors) = (request.target.rt, request.selectors()?);
    let store = shared.store();
    let items: Vec<Value> = store
        .list(rt, request.target.namespace.as_deref())
        .filter(|object| selectors.matches(object))
        .map(|object| present(object, request.metadata_only()))
        .collect();
    let (api_version, kind) = if request.metadata_only() {
        (
            "meta.k8s.io/v1".to_owned(),
            "PartialObjectMetadataList".to_owned(),
        )
    } else {
        (rt.api_version.to_owned(), format!("{}List", rt.kind))
    };
    let body = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": { "resourceVersion": store.rv().to_string() },
        "items": items,
    });
    Ok(json_response(200, &body))
}

pub(crate) fn get(shared: &Shared, request: &Request, name: &str) -> Result<Response, Failure> {
    let (rt, namespace) = (request.target.rt, request.target.namespace());
    let store = shared.store();
    let object = store
        .get(rt, namespace, name)
        .ok_or_else(|| Failure::not_found(rt, name))?;
    Ok(json_response(
        200,
        &present(object, request.metadata_only()),
    ))
}

pub(crate) fn create(shared: &Shared, request: &Request) -> Result<Response, Failure> {
    let (rt, namespace) = (request.target.rt, request.target.namespace());
    let object = json_body(&request.body)?;
    check_identity(rt, namespace, None, &object)?;
    let created = shared
        .store()
        .create(rt, namespace, object, Scope::Object)?;
    Ok(json_response(201, &created))
}

pub(crate) fn replace(
    shared: &Shared,
    request: &Request,
    name: &str,
    scope: Scope,
) -> Result<Response, Failure> {
    let (rt, namespace) = (request.target.rt, request.target.namespace());
    let object = json_body(&request.body)?;
    check_identity(rt, namespace, Some(name), &object)?;
    if meta(&object, "resourceVersion").is_none() && !rt.unconditional_update {
        let problem =
            "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update";
        return Err(Failure::invalid(rt, name, problem));
    }
    let replaced = shared.store().update(rt, namespace, name, object, scope)?;
    Ok(json_response(200, &replaced))
}

pub(crate) fn patch(
    shared: &Shared,
    request: &Request,
    name: &str,
    scope: Scope,
) -> Result<Response, Failure> {
    let (rt, namespace) = (request.target.rt, request.target.namespace());
    let (patch, apply) = patch_body(request)?;
    if apply {
        if patch["apiVersion"].as_str().is_none() || patch["kind"].as_str().is_none() {
            return Err(Failure::bad_request(
                "an apply patch must set apiVersion and kind",
            ));
        }
        check_identity(rt, namespace, Some(name), &patch)?;
    }
    let mut store = shared.store();
    let Some(mut object) = store.get(rt, namespace, name).cloned() else {
        if !(apply && scope == Scope::Object) {
            return Err(Failure::not_found(rt, name));
        }
        let mut object = patch;
        meta_mut(&mut object).insert("name".into(), json!(name));
        meta_mut(&mut object).remove("resourceVersion");
        let created = store.create(rt, namespace, object, scope)?;
        return Ok(json_response(201, &created));
    };
    merge_patch(&mut object, &patch);
    let patched = store.update(rt, namespace, name, object, scope)?;
    Ok(json_response(200, &patched))
}

pub(crate) fn delete(shared: &Shared, request: &Request, name: &str) -> Result<Response, Failure> {
    let (rt, namespace) = (request.target.rt, request.target.namespace());
    let options = if request.body.is_empty() {
        json!({})
    } else {
        json_body(&request.body)?
    };
    if options["dryRun"].as_array().is_some_and(|d| !d.is_empty()) {
        return Err(Failure::bad_request(
            "dryRun is not supported by the fake API server",
        ));
    }
    let mut store = shared.store();
    let stored = store
        .get(rt, namespace, name)
        .ok_or_else(|| Failure::not_found(rt, name))?;
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(wanted) = options["preconditions"][field].as_str()
            && Some(wanted) != meta(stored, field)
        {
            let actual = meta(stored, field).unwrap_or_default();
            let why =
                format!("{label} in precondition: {wanted}, {label} in object meta: {actual}");
            return Err(Failure::precondition_failed(rt, name, why));
        }
    }
    let deleted = store.delete(rt, namespace, name, false)?;
    // 202 while finalizers hold the object back, as the API answers a deletion still pending.
    let code = if store.get(rt, namespace, name).is_some() {
        202
    } else {
        200
    };
    Ok(json_response(code, &deleted))
}

pub(crate) fn evict(shared: &Shared, request: &Request, name: &str) -> Result<Response, Failure> {
    let eviction = json_body(&request.body)?;
    let mut store = shared.store();
    let done = subresource::evict(&mut store, request.target.namespace(), name, &eviction)?;
    Ok(json_response(201, &done))
}

pub(crate) fn scale(shared: &Shared, request: &Request, name: &str) -> Result<Response, Failure> {
    let (rt, namespace) = (request.target.rt, request.target.namespace());
    let mut store = shared.store();
    let scale = match request.method {
        Method::GET => subresource::scale_of_stored(&store, rt, namespace, name)?,
        Method::PUT => {
            subresource::set_scale(&mut store, rt, namespace, name, json_body(&request.body)?)?
        }
        Method::PATCH => {
            let (patch, _) = patch_body(request)?;
            let mut scale = subresource::scale_of_stored(&store, rt, namespace, name)?;
            merge_patch(&mut scale, &patch);
            subresource::set_scale(&mut store, rt, namespace, name, scale)?
        }
        _ => return Err(Failure::method_not_allowed(request.method.as_str())),
    };
    Ok(json_response(200, &scale))
}

/// The patch document and whether it is a server-side apply, by `Content-Type`.
fn patch_body(request: &Request) -> Result<(Value, bool), Failure> {
    let content_type = request
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok());
    let mime = content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    match mime {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            Ok((json_body(&request.body)?, false))
        }
        "application/apply-patch+yaml" => {
            if request.param("fieldManager").is_none() {
                let message =
                    "PATCH requests with apply content type require the fieldManager parameter";
                return Err(Failure::bad_request(message));
            }
            // JSON is YAML; kube sends JSON, kubectl sends YAML.
            let body: Value = serde_json::from_slice(&request.body)
                .or_else(|_| serde_yaml::from_slice(&request.body))
                .map_err(|e| Failure::bad_request(format!("the apply patch is not YAML: {e}")))?;
            Ok((body, true))
        }
        other => Err(Failure::unsupported_media_type(other)),
    }
}

fn json_body(body: &Bytes) -> Result<Value, Failure> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("the request body is not JSON: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(Failure::bad_request(
            "the request body is not a JSON object",
        ))
    }
}

/// Refuses a body whose apiVersion, kind, namespace or name contradicts the URL.
fn check_identity(
    rt: &ResourceType,
    namespace: &str,
    name: Option<&str>,
    object: &Value,
) -> Result<(), Failure> {
    let expected = [
        ("apiVersion", object["apiVersion"].as_str(), rt.api_version),
        ("kind", object["kind"].as_str(), rt.kind),
        (
            "namespace",
            meta(object, "namespace").filter(|_| rt.namespaced),
            namespace,
        ),
        (
            "name",
            meta(object, "name").filter(|_| name.is_some()),
            name.unwrap_or_default(),
        ),
    ];
    for (field, found, wanted) in expected {
        if let Some(found) = found
            && found != wanted
        {
            let message = format!(
                "the {field} of the provided object ({found}) does not match the request ({wanted})"
            );
            return Err(Failure::bad_request(message));
        }
    }
    Ok(())
}
