//! Builder-style `with_*` setters for the `#[non_exhaustive]` config structs,
//! which other crates cannot build with a struct literal.

/// `with_<field>` methods that set one public field and return the config.
/// `value` fields take a `T` (so that integer literals need no suffix),
/// `into` fields an `impl Into<T>`, and `some` fields are `Option<T>` and
/// take an `impl Into<T>`.
macro_rules! setters {
    ($($setter:ident => $field:ident: $kind:ident $ty:ty),* $(,)?) => {
        $(crate::setters::setters!(@one $setter $field $kind $ty);)*
    };
    (@one $setter:ident $field:ident value $ty:ty) => {
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        #[must_use]
        pub fn $setter(mut self, $field: $ty) -> Self {
            self.$field = $field;
            self
        }
    };
    (@one $setter:ident $field:ident into $ty:ty) => {
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        #[must_use]
        pub fn $setter(mut self, $field: impl Into<$ty>) -> Self {
            self.$field = $field.into();
            self
        }
    };
    (@one $setter:ident $field:ident some $ty:ty) => {
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        #[must_use]
        pub fn $setter(mut self, $field: impl Into<$ty>) -> Self {
            self.$field = Some($field.into());
            self
        }
    };
}

pub(crate) use setters;
