//! One visitor type for the rewriter's extra looks at a statement
//! (`catalog` listings, `search_path` calls). sqlparser's `Visit` is
//! generic over the visitor, and each visitor type instantiates the walk
//! over the whole AST again (some 700 KB of code each in a release build):
//! the looks share this one type and say what they want through [`Hooks`].

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Query, Statement, TableFactor, Visit, Visitor};

/// What a look wants to see; each hook defaults to nothing.
pub(crate) trait Hooks {
    fn query(&mut self, _query: &Query) {}
    fn table_factor(&mut self, _factor: &TableFactor) {}
    fn expr(&mut self, _expr: &Expr) {}
}

/// Walk `statement`, calling `hooks` at each query, FROM item and
/// expression, in the order sqlparser visits them.
pub(crate) fn visit(statement: &Statement, hooks: &mut dyn Hooks) {
    let _ = statement.visit(&mut DynVisitor(hooks));
}

struct DynVisitor<'h>(&'h mut dyn Hooks);

impl Visitor for DynVisitor<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.0.query(query);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        self.0.table_factor(factor);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        self.0.expr(expr);
        ControlFlow::Continue(())
    }
}
