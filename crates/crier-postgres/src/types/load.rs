//! A database's types, read from its catalog.

use std::collections::HashMap;

use super::{Attribute, PgType, TypeCatalog};

/// Reads types, with the base type of each domain and the kind of each (`typtype`).
const SELECT_TYPES: &str = "select t.oid, t.typname::text, t.typcategory::text, t.typelem, \
     t.typdelim::text, t.typtype::text, t.typbasetype \
     from pg_catalog.pg_type t";

/// Reads the live attributes of composite types, in order.
const SELECT_ATTRIBUTES: &str = "select t.oid, a.attname::text, a.atttypid \
     from pg_catalog.pg_type t \
     join pg_catalog.pg_attribute a on a.attrelid = t.typrelid \
     where t.typtype = 'c' and a.attnum > 0 and not a.attisdropped";

/// The OIDs of a type and of every type its values are made of: array elements, domain
/// base types and composite attributes' types, transitively.
const SELECT_DEPENDENCIES: &str = "with recursive needed(oid) as ( \
       select $1::oid \
       union \
       select part.oid from needed \
       join pg_catalog.pg_type t on t.oid = needed.oid \
       left join pg_catalog.pg_attribute a on t.typtype = 'c' and a.attrelid = t.typrelid \
         and a.attnum > 0 and not a.attisdropped \
       cross join lateral (values (t.typelem), (t.typbasetype), (a.atttypid)) part(oid) \
       where part.oid is not null and part.oid <> 0 \
     ) select oid from needed";

impl TypeCatalog {
    /// Every type of the database (built-in ones, enums, domains, composites, extensions'
    /// types), read from `pg_type`, with the base type of each domain and the attributes
    /// of each composite type (from `pg_attribute`), which rendering needs.
    pub async fn load(
        client: &tokio_postgres::Client,
    ) -> Result<TypeCatalog, tokio_postgres::Error> {
        let mut catalog = TypeCatalog::default();
        catalog.read(client, None).await?;
        Ok(catalog)
    }

    /// Reads one type from the database, with every type its values are made of (array
    /// elements, domain base types, composite attributes' types), adding or replacing
    /// them: for a type that appeared after [`TypeCatalog::load`] (pgoutput's Type message
    /// names it but says nothing of its kind). Returns the type, `None` if it does not
    /// exist.
    pub async fn load_type(
        &mut self,
        client: &tokio_postgres::Client,
        oid: u32,
    ) -> Result<Option<&PgType>, tokio_postgres::Error> {
        let needed: Vec<u32> = client
            .query(SELECT_DEPENDENCIES, &[&oid])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        self.read(client, Some(&needed)).await?;
        Ok(self.types.get(&oid))
    }

    /// Reads the types with these OIDs (all types for `None`), their domains' base
    /// types and their composites' attributes.
    async fn read(
        &mut self,
        client: &tokio_postgres::Client,
        oids: Option<&[u32]>,
    ) -> Result<(), tokio_postgres::Error> {
        let (types, attributes) = match oids {
            Some(oids) => {
                let types = format!("{SELECT_TYPES} where t.oid = any($1)");
                let attributes =
                    format!("{SELECT_ATTRIBUTES} and t.oid = any($1) order by t.oid, a.attnum");
                (
                    client.query(&types, &[&oids]).await?,
                    client.query(&attributes, &[&oids]).await?,
                )
            }
            None => {
                let attributes = format!("{SELECT_ATTRIBUTES} order by t.oid, a.attnum");
                (
                    client.query(SELECT_TYPES, &[]).await?,
                    client.query(&attributes, &[]).await?,
                )
            }
        };
        let mut composites: HashMap<u32, Vec<Attribute>> = HashMap::new();
        for row in types {
            let oid: u32 = row.get(0);
            let typtype: String = row.get(5);
            let base: u32 = row.get(6);
            self.types.insert(
                oid,
                PgType {
                    oid,
                    name: row.get(1),
                    category: first_char(&row.get::<_, String>(2)),
                    element: row.get(3),
                    delimiter: first_char(&row.get::<_, String>(4)),
                },
            );
            if typtype == "d" && base != 0 {
                self.domains.insert(oid, base);
            } else {
                self.domains.remove(&oid);
            }
            if typtype != "c" {
                self.composites.remove(&oid);
            } else {
                // A composite type may have no (live) attributes: no rows below.
                composites.insert(oid, Vec::new());
            }
        }
        for row in attributes {
            composites.entry(row.get(0)).or_default().push(Attribute {
                name: row.get(1),
                type_oid: row.get(2),
            });
        }
        // Replaced whole: a composite read again may have gained or lost attributes.
        self.composites.extend(composites);
        Ok(())
    }
}

fn first_char(text: &str) -> char {
    text.chars().next().unwrap_or('\0')
}
