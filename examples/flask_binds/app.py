"""Flask + Flask-SQLAlchemy with two binds (PostgreSQL default, MariaDB
"maria") whose db.session.commit() is atomic through txcoord.

Environment: DATABASE_URL (PostgreSQL, SQLAlchemy URL), MARIADB_URL,
TXCOORD_ADDRESS (host:port), optional TXCOORD_TOKEN. The txcoord binds must
point at the same databases: "pg" for the default bind, "maria" for MariaDB.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.exc import IntegrityError

import txcoord
from txcoord.sqla import TwoPhase

db = SQLAlchemy()
PREFIX = os.environ.get("EXAMPLE_TABLE_PREFIX", "flask_")  # the tests use a unique one


class Order(db.Model):  # default bind: PostgreSQL
    __tablename__ = PREFIX + "orders"
    id = db.Column(db.Integer, primary_key=True)
    item = db.Column(db.String(100), nullable=False)
    quantity = db.Column(db.Integer, nullable=False)


class StockMove(db.Model):  # MariaDB bind
    __bind_key__ = "maria"
    __tablename__ = PREFIX + "stock_moves"
    id = db.Column(db.Integer, primary_key=True)
    order_id = db.Column(db.Integer, nullable=False, unique=True)
    item = db.Column(db.String(100), nullable=False)
    delta = db.Column(db.Integer, nullable=False)


def create_app(config: Optional[Dict[str, Any]] = None) -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get("DATABASE_URL")
    app.config["SQLALCHEMY_BINDS"] = {"maria": os.environ.get("MARIADB_URL")}
    app.config["TXCOORD_ADDRESS"] = os.environ.get("TXCOORD_ADDRESS")
    app.config["TXCOORD_TOKEN"] = os.environ.get("TXCOORD_TOKEN")
    app.config.update(config or {})
    db.init_app(app)
    client = txcoord.Client(app.config["TXCOORD_ADDRESS"], token=app.config["TXCOORD_TOKEN"])
    with app.app_context():
        db.create_all()
        # txcoord bind name -> this app's engine on the same database
        TwoPhase(client, {"pg": db.engines[None], "maria": db.engines["maria"]}, timeout=30,
                 labels={"app": "flask_binds"}).install(db.session)

    @app.post("/orders")
    def place_order():
        """Writes an order (PostgreSQL) and its stock move (MariaDB) in one atomic commit."""
        body = request.get_json(force=True)
        order = Order(id=int(body["id"]), item=str(body["item"]), quantity=int(body["quantity"]))
        db.session.add(order)
        db.session.add(StockMove(order_id=order.id, item=order.item, delta=-order.quantity))
        try:
            db.session.commit()
        except txcoord.TransactionAborted as e:
            db.session.rollback()
            return jsonify(error="aborted", detail=str(e), txn_id=e.txn_id), 409
        except IntegrityError as e:  # e.g. the order exists: nothing was committed anywhere
            db.session.rollback()
            return jsonify(error="conflict", detail=str(e.orig)), 409
        except txcoord.OutcomeUnknown as e:
            db.session.rollback()
            return jsonify(error="outcome unknown", txn_id=e.txn_id), 503
        return jsonify(id=order.id, status="committed"), 201

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int):
        o = db.session.get(Order, order_id)
        m = db.session.execute(db.select(StockMove).filter_by(order_id=order_id)).scalar_one_or_none()
        return jsonify(order=None if o is None else {"item": o.item, "quantity": o.quantity},
                       stock_move=None if m is None else {"item": m.item, "delta": m.delta})

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
