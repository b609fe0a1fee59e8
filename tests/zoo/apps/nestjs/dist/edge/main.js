"use strict";
var __decorate = (this && this.__decorate) || function (decorators, target, key, desc) {
    var c = arguments.length, r = c < 3 ? target : desc === null ? desc = Object.getOwnPropertyDescriptor(target, key) : desc, d;
    if (typeof Reflect === "object" && typeof Reflect.decorate === "function") r = Reflect.decorate(decorators, target, key, desc);
    else for (var i = decorators.length - 1; i >= 0; i--) if (d = decorators[i]) r = (c < 3 ? d(r) : c > 3 ? d(target, key, r) : d(target, key)) || r;
    return c > 3 && r && Object.defineProperty(target, key, r), r;
};
var __metadata = (this && this.__metadata) || function (k, v) {
    if (typeof Reflect === "object" && typeof Reflect.metadata === "function") return Reflect.metadata(k, v);
};
var __param = (this && this.__param) || function (paramIndex, decorator) {
    return function (target, key) { decorator(target, key, paramIndex); }
};
Object.defineProperty(exports, "__esModule", { value: true });
// edge: the storefront API. Calls catalog (and the reviews service) through the
// shared UpstreamClient; holds carts in memory.
const common_1 = require("@nestjs/common");
const core_1 = require("@nestjs/core");
const bootstrap_1 = require("../lib/bootstrap");
const errors_1 = require("../lib/errors");
const filter_1 = require("../lib/filter");
const flags_1 = require("../lib/flags");
const upstream_1 = require("../lib/upstream");
let Upstreams = class Upstreams {
    catalog = new upstream_1.UpstreamClient('catalog', process.env.CATALOG_URL, 5000);
    reviews = new upstream_1.UpstreamClient('reviews', process.env.REVIEWS_URL, 1000);
};
Upstreams = __decorate([
    (0, common_1.Injectable)()
], Upstreams);
const q = encodeURIComponent;
let StorefrontController = class StorefrontController {
    up;
    constructor(up) {
        this.up = up;
    }
    getItem(sku) {
        return this.up.catalog.getJson(`/items/${q(sku)}`);
    }
    getPrice(sku) {
        return this.up.catalog.getJson(`/items/${q(sku)}/price`);
    }
    async getProductPage(sku, req) {
        const item = await this.up.catalog.getJson(`/items/${q(sku)}`);
        const widget = (0, flags_1.evaluateFlag)('edge.reviews-widget', req.tenant);
        const reviews = widget === 'on' ? await this.up.reviews.getJson(`/reviews/${q(sku)}`) : [];
        return { item, reviews };
    }
    getDelivery(sku) {
        return this.up.catalog.getJson(`/items/${q(sku)}/delivery-estimate`);
    }
    getAvailability(sku) {
        return this.up.catalog.getJson(`/items/${q(sku)}/availability`);
    }
    getReport(name) {
        return this.up.catalog.getJson(`/reports/${q(name)}`);
    }
    getInventory(sku, audit) {
        return this.up.catalog.getJson(`/inventory/${q(sku)}${audit ? `?audit=${q(audit)}` : ''}`);
    }
    // catalog's recommendations answer 503 now and then: retried.
    getRecommendations() {
        return (0, upstream_1.withRetry)(() => this.up.catalog.getJson('/recommendations'));
    }
    getBundle(id) {
        return this.up.catalog.getJson(`/bundles/${q(id)}`);
    }
    getOrderSummary(id) {
        return this.up.catalog.getJson(`/orders/${q(id)}/summary`);
    }
};
__decorate([
    (0, common_1.Get)('items/:sku'),
    __param(0, (0, common_1.Param)('sku')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", void 0)
], StorefrontController.prototype, "getItem", null);
__decorate([
    (0, common_1.Get)('items/:sku/price'),
    __param(0, (0, common_1.Param)('sku')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", void 0)
], StorefrontController.prototype, "getPrice", null);
__decorate([
    (0, common_1.Get)('items/:sku/page'),
    __param(0, (0, common_1.Param)('sku')),
    __param(1, (0, common_1.Req)()),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String, Object]),
    __metadata("design:returntype", Promise)
], StorefrontController.prototype, "getProductPage", null);
__decorate([
    (0, common_1.Get)('items/:sku/delivery'),
    __param(0, (0, common_1.Param)('sku')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", void 0)
], StorefrontController.prototype, "getDelivery", null);
__decorate([
    (0, common_1.Get)('items/:sku/availability'),
    __param(0, (0, common_1.Param)('sku')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", void 0)
], StorefrontController.prototype, "getAvailability", null);
__decorate([
    (0, common_1.Get)('reports/:name'),
    __param(0, (0, common_1.Param)('name')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", void 0)
], StorefrontController.prototype, "getReport", null);
__decorate([
    (0, common_1.Get)('inventory/:sku'),
    __param(0, (0, common_1.Param)('sku')),
    __param(1, (0, common_1.Query)('audit')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String, String]),
    __metadata("design:returntype", void 0)
], StorefrontController.prototype, "getInventory", null);
__decorate([
    (0, common_1.Get)('recommendations'),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", []),
    __metadata("design:returntype", void 0)
], StorefrontController.prototype, "getRecommendations", null);
__decorate([
    (0, common_1.Get)('bundles/:id'),
    __param(0, (0, common_1.Param)('id')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", void 0)
], StorefrontController.prototype, "getBundle", null);
__decorate([
    (0, common_1.Get)('orders/:id/summary'),
    __param(0, (0, common_1.Param)('id')),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [String]),
    __metadata("design:returntype", void 0)
], StorefrontController.prototype, "getOrderSummary", null);
StorefrontController = __decorate([
    (0, common_1.Controller)('storefront'),
    __metadata("design:paramtypes", [Upstreams])
], StorefrontController);
const sessions = new Map();
function sessionFor(tenant) {
    let s = sessions.get(tenant);
    if (!s) {
        s = { tenant, cart: { lines: [] } };
        s.cart.session = s;
        sessions.set(tenant, s);
    }
    return s;
}
let CartController = class CartController {
    addToCart(body, req) {
        const session = sessionFor(req.tenant);
        const lines = Array.isArray(body?.lines) ? body.lines : [];
        lines.forEach((line, i) => {
            if (!Number.isInteger(line?.qty) || line.qty <= 0) {
                // BUG (scenario error_responder_throws): the details carry the live
                // cart, which points back at its session; AllExceptionsFilter
                // serialises the details and throws on the cycle.
                throw new errors_1.ValidationError(`lines[${i}].qty must be a positive integer`, {
                    field: `lines[${i}].qty`,
                    received: line?.qty,
                    cart: session.cart,
                });
            }
        });
        session.cart.lines.push(...lines);
        return { tenant: session.tenant, lines: session.cart.lines.length };
    }
    // Checkout is frozen per tenant during a migration; the handler answers 500
    // itself (no exception anywhere).
    previewCheckout(req, res) {
        if ((0, flags_1.evaluateFlag)('edge.checkout-freeze', req.tenant) === 'frozen') {
            res.status(500).json({ error: 'checkout_unavailable', message: 'checkout is frozen for this tenant' });
            return;
        }
        const session = sessionFor(req.tenant);
        res.json({ tenant: req.tenant, lines: session.cart.lines.length, ready: true });
    }
};
__decorate([
    (0, common_1.Post)('cart'),
    __param(0, (0, common_1.Body)()),
    __param(1, (0, common_1.Req)()),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [Object, Object]),
    __metadata("design:returntype", void 0)
], CartController.prototype, "addToCart", null);
__decorate([
    (0, common_1.Get)('checkout/preview'),
    __param(0, (0, common_1.Req)()),
    __param(1, (0, common_1.Res)()),
    __metadata("design:type", Function),
    __metadata("design:paramtypes", [Object, Object]),
    __metadata("design:returntype", void 0)
], CartController.prototype, "previewCheckout", null);
CartController = __decorate([
    (0, common_1.Controller)('storefront')
], CartController);
let EdgeModule = class EdgeModule {
};
EdgeModule = __decorate([
    (0, common_1.Module)({
        controllers: [StorefrontController, CartController],
        providers: [Upstreams, { provide: core_1.APP_FILTER, useClass: filter_1.AllExceptionsFilter }],
    })
], EdgeModule);
(0, bootstrap_1.bootstrap)(EdgeModule, 'edge');
