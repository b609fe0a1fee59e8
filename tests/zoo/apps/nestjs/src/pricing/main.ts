// pricing: quotes, shipping quotes and stock levels. Deployed twice, in
// us-east-1 and in eu-west-1 (APP_REGION); no store of its own.
import { Controller, Get, Module, Param, Req, Res } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import type { Response } from 'express';
import { bootstrap } from '../lib/bootstrap';
import { AllExceptionsFilter } from '../lib/filter';
import { evaluateFlag } from '../lib/flags';

const REGION = process.env.APP_REGION || 'us-east-1';

// Sales tax per deployment region. BUG (scenario region_specific_chain): the
// eu-west-1 deployment shipped without its table, so every quote there reads
// `.standard` of undefined.
const TAX_TABLES: Record<string, { standard: number; reduced: number }> = {
  'us-east-1': { standard: 0.0725, reduced: 0.03 },
};

// Stock as the legacy warehouse feed delivers it: `available` is text, empty
// while a count is running.
const STOCK_FEED: Record<string, { available: string; warehouse: string }> = {
  'SKU-1': { available: '12', warehouse: 'w1' },
  'SKU-2': { available: '4', warehouse: 'w2' },
  'SKU-7': { available: '', warehouse: 'w2' },
};

function listPriceCents(sku: string): number {
  const n = Number(sku.replace(/\D/g, '')) || 1;
  return 1000 + n * 250;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Controller()
class QuotesController {
  @Get('healthz')
  health() {
    return { ok: true, region: REGION };
  }

  @Get('quote/:sku')
  quote(@Param('sku') sku: string, @Req() req: any) {
    const signed = evaluateFlag('pricing.signed-quotes', req.tenant) === 'on';
    const net = listPriceCents(sku);
    const rate = TAX_TABLES[REGION].standard;
    const tax = Math.round(net * rate);
    return { sku, region: REGION, netCents: net, taxCents: tax, grossCents: net + tax, signed };
  }

  // The freight partner behind this endpoint needs about a second for heavy goods.
  @Get('shipping-quote/:sku')
  async shippingQuote(@Param('sku') sku: string) {
    const heavy = sku.startsWith('HEAVY');
    await sleep(heavy ? 1000 : 15);
    return { sku, carrier: heavy ? 'freight' : 'parcel', cents: heavy ? 8900 : 590, days: heavy ? 6 : 2 };
  }

  // Renders the feed entry by hand (the legacy feed's format). BUG (scenario
  // malformed_json): an empty count yields `"available":,` — invalid JSON sent
  // with status 200.
  @Get('stock/:sku')
  stock(@Param('sku') sku: string, @Res() res: Response) {
    const row = STOCK_FEED[sku] ?? { available: '0', warehouse: 'w1' };
    res
      .status(200)
      .type('application/json')
      .send(`{"sku":"${sku}","available":${row.available},"warehouse":"${row.warehouse}"}`);
  }
}

@Module({
  controllers: [QuotesController],
  providers: [{ provide: APP_FILTER, useClass: AllExceptionsFilter }],
})
class PricingModule {}

bootstrap(PricingModule, `pricing (${REGION})`);
