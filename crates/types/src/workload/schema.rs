//! The OpenAPI schema of [`WorkloadData`]: a `oneOf` over the kinds, each the kind's own object
//! with the `type` tag added to its properties. A derived schema combines each kind's object,
//! which refuses unknown fields, with the tag in an `allOf`, which no workload satisfies (the
//! tag is unknown to the kind's object).

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, OneOf, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::{Container, Kubernetes, NetworkResource, Vm, Volume, WorkloadData, WorkloadKind};

/// The schema of `T` with the required tag `type: kind`.
fn tagged<T: PartialSchema>(kind: WorkloadKind) -> RefOr<Schema> {
    let tag = Object::builder()
        .schema_type(Type::String)
        .enum_values(Some([kind.as_str()]))
        .description(Some("The kind of workload."));
    // Every kind derives its schema from a struct, so it is an object (the test below checks).
    let RefOr::T(Schema::Object(mut object)) = T::schema() else {
        panic!("the schema of workload kind {} is not an object", kind.as_str())
    };
    object.properties.insert("type".into(), tag.into());
    object.required.insert(0, "type".into());
    object.title = Some(kind.as_str().into());
    RefOr::T(Schema::Object(object))
}

impl PartialSchema for WorkloadData {
    fn schema() -> RefOr<Schema> {
        let kinds = OneOf::builder()
            .description(Some("The kinds of workload and their fields, told apart by `type`."))
            .item(tagged::<NetworkResource>(WorkloadKind::NetworkResource))
            .item(tagged::<Container>(WorkloadKind::Container))
            .item(tagged::<Volume>(WorkloadKind::Volume))
            .item(tagged::<Kubernetes>(WorkloadKind::Kubernetes))
            .item(tagged::<Vm>(WorkloadKind::Vm));
        RefOr::T(Schema::OneOf(kinds.build()))
    }
}

impl ToSchema for WorkloadData {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("WorkloadData")
    }

    /// The kinds' own schemas (without the tag, for tools that name them) and theirs.
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        kind::<NetworkResource>(schemas);
        kind::<Container>(schemas);
        kind::<Volume>(schemas);
        kind::<Kubernetes>(schemas);
        kind::<Vm>(schemas);
    }
}

/// Add the schema of kind `T` and those it refers to.
fn kind<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into(), T::schema()));
    T::schemas(schemas);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_one_object_with_its_tag() {
        let RefOr::T(Schema::OneOf(one_of)) = WorkloadData::schema() else { panic!("not a oneOf") };
        let tags: Vec<_> = one_of
            .items
            .iter()
            .map(|item| {
                let RefOr::T(Schema::Object(object)) = item else {
                    panic!("a kind is not an object: {}", serde_json::to_string(item).unwrap())
                };
                assert!(object.required.contains(&"type".to_string()), "{:?}", object.title);
                serde_json::to_value(&object.properties["type"]).unwrap()["enum"][0].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(tags, ["network_resource", "container", "volume", "kubernetes", "vm"]);
    }
}
